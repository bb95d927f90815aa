"""Query media in the label store: uploads kept as content-addressed copies beside the database.

A query's media is stored once under ``<db stem>_media/<sha[:2]>/<sha><ext>`` (SHA-256 of the
bytes), written atomically before the row that points at it, so a crash never leaves a row
pointing at half a file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from xmr.errors import InputError

MAX_MEDIA_BYTES = 50 * 1024 * 1024


def query_payload(
    media_dir: Path, modality: str, *, text: str | None, media: Any
) -> tuple[str | None, str | None, str]:
    """A query's payload checked and, for media, stored: ``(text, stored media path, sha256)``.

    The stored path is relative to ``media_dir``; the hash is of the text or the media bytes (it
    finds duplicate queries).
    """
    if (text is None) == (media is None):
        raise InputError("a query needs exactly one of text or media")
    if text is not None:
        text = str(text).strip()
        if not text:
            raise InputError("query text is empty")
        return text, None, hashlib.sha256(text.encode("utf-8")).hexdigest()
    data, ext = _media_bytes(modality, media)
    if not data:
        raise InputError("query media is empty")
    sha = hashlib.sha256(data).hexdigest()
    stored_rel = f"{sha[:2]}/{sha}{ext}"
    target = media_dir / stored_rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    return None, stored_rel, sha


def _sniff_extension(data: bytes) -> str:
    """A file extension from the first bytes of a media file (the stored copy keeps it)."""
    heads = {
        b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"GIF8": ".gif", b"fLaC": ".flac",
        b"OggS": ".ogg", b"ID3": ".mp3", b"\xff\xfb": ".mp3", b"\xff\xf3": ".mp3", b"BM": ".bmp",
    }
    for head, ext in heads.items():
        if data.startswith(head):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"


def _media_bytes(modality: str, media: Any) -> tuple[bytes, str]:
    """Bytes and extension of an upload: a path, bytes, a PIL image / array, or ``(sr, array)``."""
    if isinstance(media, (str, os.PathLike)):
        path = Path(media)
        if not path.is_file():
            raise InputError(f"query media {path} does not exist")
        if path.stat().st_size > MAX_MEDIA_BYTES:
            raise InputError(f"query media {path} is larger than {MAX_MEDIA_BYTES // 2**20} MB")
        data = path.read_bytes()
        return data, (path.suffix.lower() or _sniff_extension(data))
    if isinstance(media, (bytes, bytearray, memoryview)):
        data = bytes(media)
        if len(data) > MAX_MEDIA_BYTES:
            raise InputError(f"query media is larger than {MAX_MEDIA_BYTES // 2**20} MB")
        return data, _sniff_extension(data)
    import io

    import numpy as np

    if modality == "audio" and isinstance(media, tuple) and len(media) == 2:
        import soundfile as sf

        sr, wave = media
        buf = io.BytesIO()
        sf.write(buf, np.asarray(wave), int(sr), format="FLAC")
        return buf.getvalue(), ".flac"
    if modality == "image":
        from PIL import Image

        img = media if isinstance(media, Image.Image) else Image.fromarray(np.asarray(media))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    raise InputError(f"cannot store a {type(media).__name__} as {modality} query media")
