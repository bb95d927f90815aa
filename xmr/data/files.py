"""An item's media files: the one rule for where a manifest row's audio or image is.

Used by every stage that reads an item's media (``xmr embed``, the trainer's caches, ``xmr eval``,
the app's results), so that they all find the same file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xmr.errors import MissingAssetError


def has_value(value: Any) -> bool:
    """Whether a manifest cell holds something (not ``None``, NaN or blank)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(str(value).strip())


def media_file(row: Mapping[str, Any], modality: str, manifest_dir: str | Path | None = None,
               cache_dir: str | Path | None = None) -> Path:
    """The file of an item's ``modality`` (``"audio"``, ``"image"`` or ``"audio_unseen"``).

    The manifest's path when that file exists (a relative path is relative to ``manifest_dir``);
    otherwise, for a demo-corpus row (it has ``source``), the file rendered on demand into
    ``cache_dir`` by :func:`xmr.data.corpus.media_path`.

    Args:
        row: a manifest row (dict or pandas Series).
        modality: the column of the file.
        manifest_dir: the folder of the manifest.
        cache_dir: where renderings go (default ``xmr.paths.cache_dir()``).

    Raises:
        MissingAssetError: the file is not there and the row cannot be rendered.

    Example:
        >>> media_file(df.iloc[0], "audio", manifest_dir="assets/demo")  # doctest: +SKIP
        PosixPath('/home/me/.cache/xmr/corpus/audio/bach-bwv66-6-m001-3f2a9c1e.flac')
    """
    value = row.get(modality)
    if has_value(value):
        path = Path(str(value))
        if not path.is_absolute() and manifest_dir is not None:
            path = Path(manifest_dir) / path
        if path.is_file():
            return path
    if has_value(row.get("source")):
        from xmr.data.corpus import media_path

        return Path(media_path(row, modality, manifest_dir=manifest_dir, cache_dir=cache_dir))
    raise MissingAssetError(f"item {row.get('id')}: {modality} file {value!r} not found (and the row has no "
                            "demo-corpus columns to render it from)")
