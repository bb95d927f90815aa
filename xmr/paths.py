"""Where the bundled demo lives, and the cache for media rendered on demand.

Every path can be overridden with an environment variable so that a Space, a test or a user's
own collection can point the app elsewhere without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def demo_manifest() -> Path:
    """The bundled demo manifest (``XMR_MANIFEST``)."""
    return _env_path("XMR_MANIFEST", ROOT / "assets" / "demo" / "manifest.parquet")


def demo_checkpoint() -> Path:
    """The bundled demo checkpoint folder (``XMR_CHECKPOINT``)."""
    return _env_path("XMR_CHECKPOINT", ROOT / "checkpoints" / "demo")


def demo_index() -> Path:
    """The prebuilt demo index folder (``XMR_INDEX``)."""
    return _env_path("XMR_INDEX", ROOT / "assets" / "demo" / "index")


def cache_dir() -> Path:
    """Cache of media rendered on demand (``XMR_CACHE_DIR``, default ``~/.cache/xmr``)."""
    return _env_path("XMR_CACHE_DIR", Path.home() / ".cache" / "xmr")


def labels_db() -> Path:
    """The relevance-label database (``XMR_LABELS_DB``, default ``labels/labels.sqlite``)."""
    return _env_path("XMR_LABELS_DB", ROOT / "labels" / "labels.sqlite")
