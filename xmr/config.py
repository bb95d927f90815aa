"""Strict dataclass configs: the one way a mapping (JSON, YAML, a checkpoint) becomes a config.

A key the dataclass does not have is a typo, never silently ignored. Every problem is a
:class:`~xmr.errors.ConfigError`, which is an :class:`~xmr.errors.InputError` (and so a
``ValueError``): the CLI prints it as one line, the app shows it as a message.

Example::

    @dataclass
    class Window:
        seconds: float = 10.0

    strict_from_dict(Window, {"seconds": 5})    # Window(seconds=5)
    strict_from_dict(Window, {"secs": 5})       # ConfigError: unknown key(s) in Window: secs; known: seconds
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from xmr.errors import ConfigError

T = TypeVar("T")


def check_keys(cls: type, data: Mapping[str, Any], *, what: str | None = None) -> None:
    """Raise :class:`ConfigError` naming the keys of ``data`` that are not fields of dataclass ``cls``.

    Args:
        cls: the dataclass.
        data: the mapping to check.
        what: the name used in the message (default: the class name), e.g. ``"optim"``.
    """
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {what or cls.__name__}: {', '.join(map(str, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def strict_from_dict(cls: type[T], data: Mapping[str, Any] | None, *, what: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and values it refuses raise :class:`ConfigError`.

    Args:
        cls: the dataclass; its ``__post_init__`` may validate (and normalise) the values.
        data: the fields by name (``None``: all defaults).
        what: the name used in messages (default: the class name).

    Example::

        cfg = strict_from_dict(SpectrogramConfig, {"n_mels": 128})
    """
    data = dict(data or {})
    check_keys(cls, data, what=what)
    try:
        return cls(**data)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a missing field or a value of the wrong type
        raise ConfigError(f"bad {what or cls.__name__}: {exc}") from exc
