"""A tiny manifest for the trainer tests: the library's synthetic collection (tones and drawings).

Each item has its own tone pattern and a matching drawing (stripes at the tone's pitch), so a
model can in principle learn the pairing; the tests only check the mechanics of training.
"""

from __future__ import annotations

from pathlib import Path

from xmr.data.synthetic import write_synthetic_collection


def write_tiny_manifest(folder: Path, *, n_train: int = 24, n_val: int = 8, seconds: float = 1.5,
                        sample_rate: int = 16000) -> Path:
    return write_synthetic_collection(folder, n_train=n_train, n_val=n_val, seconds=seconds,
                                      sample_rate=sample_rate)
