"""A tiny demo for the app tests: a 12-item corpus build, the tiny checkpoint, indexes, a label DB.

The collection is the session's real demo-corpus build (``tiny_corpus``); the indexes are built
with the ``xmr embed`` / ``xmr index build`` stages from the tiny checkpoint's embeddings. The app
is then launched for real, as a subprocess, pointed at these files by the ``XMR_*`` variables.
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


def tone(freq: float, seconds: float, sr: int = 16000, *, seed: int = 0) -> np.ndarray:
    """A decaying harmonic tone with a little noise (not silent, deterministic)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3)) * np.exp(-t / max(seconds, 0.5))
    return (0.3 * wave / np.max(np.abs(wave)) + 0.01 * rng.normal(size=t.shape)).astype(np.float32)


def write_collection(corpus_manifest: Path, folder: Path) -> Path:
    """The demo corpus build ``corpus_manifest`` (real excerpts: FluidSynth audio, Verovio images,
    both captions) as the app's collection, with every second item (by id) in the test split so
    that the Evaluate tab has several test queries; media stay where the build wrote them."""
    from xmr.data.manifest import read_manifest, write_manifest

    df = read_manifest(corpus_manifest).sort_values("id").reset_index(drop=True)
    df["split"] = ["test" if i % 2 else "train" for i in range(len(df))]
    folder.mkdir(parents=True, exist_ok=True)
    return write_manifest(df, folder / "manifest.parquet", relative_paths=False)


def build_index(checkpoint: Path, manifest: Path, out: Path) -> Path:
    """Embed the collection and build its indexes with the stages ``xmr embed`` and ``xmr index
    build`` run (track vectors of windowed audio, a window index, one text row per caption)."""
    from xmr.index import build_indexes, embed_manifest

    emb = out.parent / "embeddings"
    embed_manifest(checkpoint=checkpoint, manifest=manifest, out=emb, progress=False)
    build_indexes(embeddings=emb, out=out)
    return out


def make_demo(folder: Path, checkpoint: Path, corpus_manifest: Path) -> dict[str, str]:
    """Write the whole tiny demo under ``folder``; returns the ``XMR_*`` environment pointing at it."""
    manifest = write_collection(corpus_manifest, folder / "collection")
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
