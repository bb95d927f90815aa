"""Small helpers shared by the media decoders (one-line messages, source names, opening sources)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from xmr.errors import InputError


def one_line(text: object, limit: int = 300) -> str:
    """Collapse ``text`` to a single line of at most ``limit`` characters (for error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(src: object) -> str:
    """A short, single-line name for an input, used in error messages."""
    if isinstance(src, (str, os.PathLike)):
        return one_line(Path(src).name or str(src), 120)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def open_source(src: Any, kind: str, *, accepts: str, seekable: bool = False) -> Any:
    """Check an untrusted path, bytes or file object and return what a decoder can open.

    Args:
        src: a path (``str``/``PathLike``), the file's bytes, or a binary file object.
        kind: ``"audio"`` or ``"image"``, for the messages.
        accepts: what the caller accepts, for the message on any other type
            (e.g. ``"a file path, the file's bytes or (sample_rate, array)"``).
        seekable: file objects must also have ``seek``.

    Returns:
        The path as a ``str``, a ``BytesIO`` over the bytes, or the file object itself.

    Raises:
        InputError: a missing, non-regular or empty file, empty bytes, or an unsupported type.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise InputError(f"{kind} file not found: {one_line(path)}")
        if not path.is_file():
            raise InputError(f"not an {kind} file: {one_line(path)}")
        if path.stat().st_size == 0:
            raise InputError(f"{describe(src)} is empty (0 bytes)")
        return str(path)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise InputError(f"{kind} is empty (0 bytes)")
        return io.BytesIO(bytes(src))
    if hasattr(src, "read") and (not seekable or hasattr(src, "seek")):
        return src
    raise InputError(f"unsupported {kind} input of type {type(src).__name__}; pass {accepts}")
