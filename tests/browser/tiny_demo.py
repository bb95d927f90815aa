"""A tiny demo for the app tests: a synthetic collection, the tiny checkpoint, indexes, a label DB.

The collection is written here (sine tones as FLAC, striped PNG images, two captions each, metadata
columns) so that the app can be tested before and independently of the music21 corpus build; the
indexes are built with ``xmr.index`` from the tiny checkpoint's embeddings of that collection. The
app is then launched for real, as a subprocess, pointed at these files by the ``XMR_*`` variables.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["C major", "G major", "D minor", "A minor"]
GENRES = ["chorale", "reel", "waltz"]
INSTRUMENTS = ["organ", "fiddle", "piano", "flute"]


def tone(freq: float, seconds: float, sr: int = 16000, *, seed: int = 0) -> np.ndarray:
    """A decaying harmonic tone with a little noise (not silent, deterministic)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3)) * np.exp(-t / max(seconds, 0.5))
    return (0.3 * wave / np.max(np.abs(wave)) + 0.01 * rng.normal(size=t.shape)).astype(np.float32)


def stripes(n: int, size=(48, 160)) -> np.ndarray:
    """A grayscale picture with ``n``-dependent staff-like stripes and blobs."""
    h, w = size
    img = np.full((h, w), 255, np.uint8)
    for line in range(5):
        img[8 + line * 6, :] = 0
    for j in range(3 + n % 5):
        x = 10 + (j * (w - 20)) // (3 + n % 5)
        y = 8 + ((n + j) % 5) * 6
        img[max(y - 2, 0): y + 3, x: x + 5] = 0
    return img


def write_collection(folder: Path, n: int = 12) -> Path:
    """Write ``n`` items (audio 2.5 s at 16 kHz, image, two captions, metadata); returns the manifest."""
    import pandas as pd
    import soundfile as sf
    from PIL import Image

    from xmr.data.manifest import write_manifest

    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "image").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        item_id = f"item{i:03d}"
        sf.write(folder / "audio" / f"{item_id}.flac", tone(220.0 * 2 ** (i / 12), 2.5, seed=i), 16000)
        Image.fromarray(stripes(i)).save(folder / "image" / f"{item_id}.png")
        genre, key, inst = GENRES[i % 3], KEYS[i % 4], INSTRUMENTS[i % 4]
        rows.append({
            "id": item_id, "split": "test" if i % 2 else "train",
            "audio": f"audio/{item_id}.flac", "image": f"image/{item_id}.png",
            "caption": [f"a {genre} by composer {i % 3} for {inst} in {key}",
                        f"a {'slow' if i % 2 else 'lively'} {genre} for {inst} in {key}"],
            "collection": f"collection {i % 2}", "genre": genre, "key": key, "instrument": inst,
            "duration": 2.5,
        })
    return write_manifest(pd.DataFrame(rows), folder / "manifest.parquet")


def build_index(checkpoint: Path, manifest: Path, out: Path) -> Path:
    """Embed the collection and build its indexes with the stages ``xmr embed`` and ``xmr index
    build`` run (track vectors of windowed audio, a window index, one text row per caption)."""
    from xmr.index import build_indexes, embed_manifest

    emb = out.parent / "embeddings"
    embed_manifest(checkpoint=checkpoint, manifest=manifest, out=emb, progress=False)
    build_indexes(embeddings=emb, out=out)
    return out


def make_demo(folder: Path, checkpoint: Path, *, n: int = 12) -> dict[str, str]:
    """Write the whole tiny demo under ``folder``; returns the ``XMR_*`` environment pointing at it."""
    manifest = write_collection(folder / "collection", n=n)
    index = folder / "index"
    build_index(checkpoint, manifest, index)
    return {"XMR_CHECKPOINT": str(checkpoint), "XMR_INDEX": str(index), "XMR_MANIFEST": str(manifest),
            "XMR_LABELS_DB": str(folder / "labels" / "labels.sqlite"), "XMR_CACHE_DIR": str(folder / "cache")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """The real app (``python app.py``) in a subprocess on a free localhost port."""

    def __init__(self, env: dict[str, str], *, log: Path, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full = dict(os.environ)
        full.update(env)
        full.update({"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                     "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        self.log = log
        self._log_fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        cmd = [sys.executable, str(ROOT / "app.py")]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=self._log_fh, stderr=subprocess.STDOUT)
        self.ready_seconds = self._wait(timeout)

    def _wait(self, timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app was not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_fh.close()


def labels_rows(db: str | Path, annotator: str) -> list[tuple]:
    """Current judgement rows of one annotator, read with plain sqlite3 (not through the app)."""
    import sqlite3

    con = sqlite3.connect(str(db))
    try:
        return con.execute(
            "SELECT j.item_id, j.grade FROM judgements j JOIN annotators a ON a.id = j.annotator_id "
            "WHERE a.name = ? AND j.state = 'current' ORDER BY j.id", (annotator,)).fetchall()
    finally:
        con.close()


def dump_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
