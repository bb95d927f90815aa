"""Small helpers shared by the media decoders (one-line messages, source names, opening sources)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from xmr.errors import InputError


def one_line(text: object, limit: int = 300) -> str:
    """Collapse ``text`` to a single line of at most ``limit`` characters (for error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# libsndfile's "Error opening 'PATH': " / "Error opening <file object>: " before its actual reason.
_OPENING = re.compile(r"^Error opening (?:'[^']*'|<[^>]*>): ")
# An absolute path anywhere in a decoder's message (its folder is the server's business, not the user's).
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\"<>()]+/)+([^\s/'\"<>()]+)")


def describe(src: object) -> str:
    """A short, single-line name for an input, used in error messages: a file by its own name."""
    if isinstance(src, (str, os.PathLike)):
        return one_line(Path(src).name or str(src), 255)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def decoder_reason(err: BaseException, src: object = None) -> str:
    """A decoder's whole reason on one line, never cut: paths become the file's own name.

    libsndfile's ``Error opening '<path>': `` prefix is dropped (the message names the file
    already) and any absolute path left in the text is replaced by its last part.

    Example:
        >>> decoder_reason(RuntimeError("Error opening '/srv/up/x.mp3': Format not recognised."))
        'Format not recognised'
    """
    text = _OPENING.sub("", " ".join(str(err).split()))
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        for form in sorted({os.fspath(src), str(path), str(path.absolute())}, key=len, reverse=True):
            text = text.replace(form, path.name)
    text = _ABS_PATH.sub(r"\1", text).strip().rstrip(".")
    return text or type(err).__name__


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
            raise InputError(f"{kind} file not found: {describe(src)}")
        if not path.is_file():
            raise InputError(f"not an {kind} file: {describe(src)}")
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
