"""Small helpers shared by the media decoders (one-line messages, source names)."""

from __future__ import annotations

import os
from pathlib import Path


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
