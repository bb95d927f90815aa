"""Fixtures for the corpus tests and for other areas that need a corpus.

* ``tiny_corpus`` -- Path of ``manifest.parquet`` of a real, small demo-corpus build (12 items:
  FluidSynth audio, Verovio images, both captions, all three splits, ``audio_unseen`` on test
  items), made once per test session. Media paths in it are relative to its folder; read it with
  ``xmr.data.manifest.read_manifest`` to get absolute paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Light collections only (short files, quick to parse) keep the session fixture fast.
TINY_COLLECTIONS = ("bach", "essen", "oneills", "ryans", "airds", "palestrina", "minstrelsy", "monteverdi")
TINY_LIMIT = 12


def build_tiny_corpus(out: Path, *, seed: int = 0, limit: int = TINY_LIMIT) -> Path:
    """Build a small demo corpus into ``out`` (one process, no progress bar); returns its manifest."""
    from xmr.data.corpus.build import MANIFEST_NAME, build_corpus

    build_corpus(out=out, seed=seed, limit=limit, workers=1, collections=TINY_COLLECTIONS, progress=False)
    return out / MANIFEST_NAME


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Manifest (``manifest.parquet``) of a real 12-item demo-corpus build."""
    return build_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus"))
