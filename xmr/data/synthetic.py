"""A synthetic collection for smoke runs: tones written with numpy, drawings made with PIL, captions.

Each item has its own tone pattern and a matching drawing (stripes at the tone's pitch), so a
model can in principle learn the pairing; it exists so that ``xmr train --config configs/tiny.yaml``
works on a fresh clone (``data.build_if_missing: synthetic``) and for the trainer's tests.

Example:
    >>> write_synthetic_collection("data/tiny")  # doctest: +SKIP
    PosixPath('data/tiny/manifest.parquet')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_collection(folder: str | Path, *, n_train: int = 24, n_val: int = 8, seconds: float = 1.5,
                               sample_rate: int = 16000, manifest_name: str = "manifest.parquet") -> Path:
    """Write ``n_train + n_val`` items (WAV, PNG, two captions each) and their manifest; returns its path.

    Args:
        folder: output folder (``audio/``, ``image/`` and the manifest).
        n_train / n_val: items in the ``train`` and ``val`` splits.
        seconds / sample_rate: length and rate of each tone.
        manifest_name: file name of the manifest in ``folder``.
    """
    import pandas as pd
    import soundfile as sf
    from PIL import Image, ImageDraw

    folder = Path(folder)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "image").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    instruments = ["organ", "piano", "fiddle", "flute"]
    for k in range(n_train + n_val):
        item = f"item{k:03d}"
        freq = 220.0 * 2 ** (k / 12)
        wave = 0.3 * np.sin(2 * np.pi * freq * t) * (0.5 + 0.5 * np.sin(2 * np.pi * (1 + k % 5) * t))
        wave += 0.01 * rng.standard_normal(len(t))
        sf.write(folder / "audio" / f"{item}.wav", wave.astype(np.float32), sample_rate)
        img = Image.new("L", (120, 40), 255)
        draw = ImageDraw.Draw(img)
        for x in range(0, 120, 4 + k % 7):
            draw.line([(x, 5 + k % 20), (x + 3, 35)], fill=0, width=1)
        img.save(folder / "image" / f"{item}.png")
        inst = instruments[k % len(instruments)]
        rows.append({
            "id": item,
            "split": "train" if k < n_train else "val",
            "audio": f"audio/{item}.wav",
            "image": f"image/{item}.png",
            "caption": [f"a tune number {k} on {inst}", f"a {inst} melody"],
        })
    path = folder / manifest_name
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows).to_parquet(tmp)
    tmp.replace(path)  # a reader never sees half a manifest
    return path
