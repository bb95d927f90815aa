"""``xmr embed``: embed every item of a manifest in every modality it has, resumably and in shards.

Output folder (what ``xmr index build`` reads)::

    embeddings.json         fingerprint, dimension, counts, checkpoint, manifest, window settings
    items.parquet           the embedded manifest rows (id, split, caption list, metadata)
    audio.npy     audio.parquet           (N_audio, D) float32 track vectors + their item ids
    audio_windows.npy  audio_windows.parquet   window vectors + (id, start, end) in seconds
    image.npy     image.parquet
    text.npy      text.parquet            one row per caption: (id, caption, caption_index)

Work is cut into fixed chunks of items (in manifest order). Chunk ``c`` belongs to rank
``c % WORLD_SIZE``, so under ``torchrun`` each process embeds its share into its own chunk files
(``parts/chunkNNNNNN.npz`` + ``.json``, then a ``.done`` marker written last). A rerun skips chunks
whose marker exists (resume after a crash); rank 0 waits for every chunk and merges them in order,
so the result does not depend on the number of processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.data.files import has_value, media_file
from xmr.errors import CheckpointMismatchError, InputError, MissingAssetError
from xmr.index.query import embed_audio
from xmr.index.windows import WINDOW_OVERLAP

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

FORMAT = "xmr-embeddings/1"
NAMES = ("audio", "audio_windows", "image", "text")


@dataclass
class Embeddings:
    """An embeddings folder in memory: vectors and row metadata per name, plus the items."""

    fingerprint: str
    dim: int
    vectors: dict[str, np.ndarray]
    rows: dict[str, Any]  # name -> DataFrame (id, ...)
    items: Any  # DataFrame of manifest rows
    info: dict[str, Any]


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"rank {rank} is not within a world of {world} processes")
    return rank, world


def _captions(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(c) for c in list(value) if str(c).strip()]


def _embed_chunk(model: XmrModel, rows: list[dict], *, modalities: list[str], manifest_dir: str | None,
                 batch_size: int, cache_dir) -> tuple[dict[str, np.ndarray], dict[str, dict[str, list]]]:
    """Vectors + row metadata (per name) of one chunk of manifest rows."""
    from xmr.media.audio import load_audio

    vecs: dict[str, np.ndarray] = {}
    meta: dict[str, dict[str, list]] = {}
    dim = int(model.embed_dim)
    if "audio" in modalities:
        have = [r for r in rows if has_value(r.get("audio")) or has_value(r.get("source"))]
        sr = int(model.sample_rate)
        waves = [load_audio(media_file(r, "audio", manifest_dir, cache_dir), sample_rate=sr) for r in have]
        tracks = embed_audio(model, waves, batch_size=batch_size)
        vecs["audio"] = np.stack([t.vector for t in tracks]) if tracks else np.zeros((0, dim), np.float32)
        meta["audio"] = {"id": [str(r["id"]) for r in have],
                         "duration": [len(w) / float(model.sample_rate) for w in waves]}
        vecs["audio_windows"] = (np.concatenate([t.windows for t in tracks]) if tracks
                                 else np.zeros((0, dim), np.float32))
        meta["audio_windows"] = {
            "id": [str(r["id"]) for r, t in zip(have, tracks, strict=True) for _ in t.starts],
            "start": [float(s) for t in tracks for s in t.starts],
            "end": [float(e) for t in tracks for e in t.ends],
        }
    if "image" in modalities:
        have = [r for r in rows if has_value(r.get("image")) or has_value(r.get("source"))]
        paths = [str(media_file(r, "image", manifest_dir, cache_dir)) for r in have]
        vecs["image"] = model.encode("image", paths, batch_size=batch_size)
        meta["image"] = {"id": [str(r["id"]) for r in have]}
    if "text" in modalities:
        ids, caps, idx = [], [], []
        for r in rows:
            for j, c in enumerate(_captions(r.get("caption"))):
                ids.append(str(r["id"]))
                caps.append(c)
                idx.append(j)
        vecs["text"] = model.encode("text", caps, batch_size=batch_size)
        meta["text"] = {"id": ids, "caption": caps, "caption_index": idx}
    for name in vecs:
        vecs[name] = np.asarray(vecs[name], dtype=np.float32).reshape(-1, dim)
    return vecs, meta


def embed_manifest(
    *,
    checkpoint: str | Path,
    manifest: str | Path,
    out: str | Path,
    batch_size: int = 32,
    splits: list[str] | None = None,
    modalities: list[str] | None = None,
    chunk_size: int = 64,
    rank: int | None = None,
    world_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    merge_timeout: float = 6 * 3600.0,
    model: XmrModel | None = None,
    device: str | None = None,
) -> Path:
    """Embed every item of ``manifest`` in every modality it has (and the model encodes).

    Audio longer than the model's window is cut into 50%-overlap windows whose mean is the track
    vector (Nakatsuka et al., 2023, Sec. 4.1.2); the window vectors are kept for the per-window index.
    Text is every caption of an item (``text.parquet`` says which item and which caption).

    Args:
        checkpoint: checkpoint folder (``xmr.load_model``).
        manifest: manifest file (CSV/JSONL/Parquet).
        out: output folder (created; reused to resume).
        batch_size: items per forward pass.
        splits: keep only these splits (default: all).
        modalities: restrict to these modalities (default: all the model has).
        chunk_size: items per resumable chunk.
        rank: this process's rank (default ``$RANK`` or 0).
        world_size: number of processes (default ``$WORLD_SIZE`` or 1).
        cache_dir: where demo-corpus media are rendered on demand.
        progress: show a tqdm progress bar.
        merge_timeout: seconds rank 0 waits for the other ranks' chunks before giving up.
        model: an already loaded model (skips loading ``checkpoint``).
        device: torch device (default: ``cuda:$LOCAL_RANK`` when a GPU is there, else CPU).

    Returns the output folder (merged on rank 0).

    Example:
        >>> embed_manifest(checkpoint="checkpoints/demo", manifest="data/corpus/manifest.parquet",
        ...                out="runs/emb")  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    import xmr
    from xmr.data.manifest import read_manifest

    out = Path(out)
    rank, world = _rank_world(rank, world_size)
    df = read_manifest(manifest)
    manifest_dir = df.attrs.get("manifest_dir", str(Path(manifest).resolve().parent))
    if splits:
        df = df[df["split"].astype(str).isin([str(s) for s in splits])]
        if df.empty:
            raise InputError(f"no items of split {', '.join(splits)} in {manifest}")
    df = df.reset_index(drop=True)
    if model is None:
        model = xmr.load_model(checkpoint, device=device or _default_device())
    mods = [m for m in ("audio", "image", "text")
            if m in model.modalities and (modalities is None or m in modalities)]
    if not mods:
        raise InputError(f"nothing to embed: the model encodes {', '.join(model.modalities)}")
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    plan = {"fingerprint": str(model.fingerprint), "items": len(df), "chunk_size": int(chunk_size),
            "modalities": mods, "first_id": str(df["id"].iat[0]) if len(df) else "",
            "last_id": str(df["id"].iat[-1]) if len(df) else ""}
    plan_path = parts / "plan.json"
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") != plan["fingerprint"]:
            raise CheckpointMismatchError(
                f"{out} holds partial embeddings of checkpoint {old.get('fingerprint')}, not "
                f"{plan['fingerprint']}; use another --out or delete it")
        if old != plan:
            raise InputError(f"{out} holds partial embeddings of another manifest or settings; "
                             "use another --out or delete it")
    elif rank == 0:
        _atomic_write(plan_path, json.dumps(plan, indent=2))
    rows = df.to_dict(orient="records")
    n_chunks = (len(rows) + chunk_size - 1) // chunk_size
    mine = [c for c in range(n_chunks) if c % world == rank]
    bar = tqdm(total=sum(min(chunk_size, len(rows) - c * chunk_size) for c in mine), unit="item",
               desc=f"embed{'' if world == 1 else f' rank {rank}/{world}'}", disable=not progress)
    for c in mine:
        chunk = rows[c * chunk_size : (c + 1) * chunk_size]
        done = parts / f"chunk{c:06d}.done"
        if not done.exists():
            vecs, meta = _embed_chunk(model, chunk, modalities=mods, manifest_dir=manifest_dir,
                                      batch_size=batch_size, cache_dir=cache_dir)
            tmp = parts / f".chunk{c:06d}.npz.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, **vecs)
            os.replace(tmp, parts / f"chunk{c:06d}.npz")
            _atomic_write(parts / f"chunk{c:06d}.json", json.dumps(meta))
            done.write_text("ok\n")  # written last: its presence means the chunk is complete
        bar.update(len(chunk))
    bar.close()
    if rank != 0:
        return out
    deadline = time.monotonic() + merge_timeout
    while not all((parts / f"chunk{c:06d}.done").exists() for c in range(n_chunks)):
        if time.monotonic() > deadline:
            raise InputError(f"other ranks did not finish their chunks in {merge_timeout:.0f} s; "
                             "rerun xmr embed to resume")
        time.sleep(2.0)
    items = df.copy()
    _merge(out, n_chunks=n_chunks, names=_names_for(mods), dim=int(model.embed_dim), items=items, info={
        "fingerprint": str(model.fingerprint),
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        "manifest": str(Path(manifest).resolve()),
        "splits": list(splits) if splits else None,
        "sample_rate": int(model.sample_rate) if "audio" in mods else None,
        "audio_window_seconds": float(model.audio_window_seconds) if "audio" in mods else None,
        "window_overlap": WINDOW_OVERLAP,
    })
    return out


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"


def _names_for(mods: list[str]) -> list[str]:
    return [n for n in NAMES if n.split("_")[0] in mods]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _merge(out: Path, *, n_chunks: int, names: list[str], dim: int, items, info: dict[str, Any]) -> None:
    """Concatenate the chunk files in chunk order into the final arrays and tables."""
    import pandas as pd

    parts = out / "parts"
    vecs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    meta: dict[str, list[pd.DataFrame]] = {n: [] for n in names}
    for c in range(n_chunks):
        with np.load(parts / f"chunk{c:06d}.npz") as z:
            for n in names:
                if n in z.files:
                    vecs[n].append(z[n])
        m = json.loads((parts / f"chunk{c:06d}.json").read_text())
        for n in names:
            if n in m:
                meta[n].append(pd.DataFrame(m[n]))
    counts = {}
    for n in names:
        arr = np.concatenate(vecs[n]) if vecs[n] else np.zeros((0, dim), np.float32)
        frame = pd.concat(meta[n], ignore_index=True) if meta[n] else pd.DataFrame({"id": []})
        np.save(out / f".{n}.tmp.npy", arr.astype(np.float32))
        os.replace(out / f".{n}.tmp.npy", out / f"{n}.npy")
        frame.to_parquet(out / f"{n}.parquet", index=False)
        counts[n] = int(len(arr))
    items.to_parquet(out / "items.parquet", index=False)
    doc = {"format": FORMAT, "dim": dim, "counts": counts, **info}
    _atomic_write(out / "embeddings.json", json.dumps(doc, indent=2) + "\n")


def load_embeddings(folder: str | Path) -> Embeddings:
    """Read an embeddings folder written by :func:`embed_manifest`.

    Example:
        >>> emb = load_embeddings("runs/emb")  # doctest: +SKIP
        >>> emb.vectors["audio"].shape, emb.fingerprint  # doctest: +SKIP
    """
    import pandas as pd

    folder = Path(folder)
    doc_path = folder / "embeddings.json"
    if not doc_path.is_file():
        raise MissingAssetError(f"no embeddings at {folder} (embeddings.json missing); run xmr embed first")
    doc = json.loads(doc_path.read_text())
    if doc.get("format") != FORMAT:
        raise InputError(f"{doc_path} is not an xmr embeddings file")
    vectors, rows = {}, {}
    for name in doc["counts"]:
        vectors[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
        rows[name] = pd.read_parquet(folder / f"{name}.parquet")
    items = pd.read_parquet(folder / "items.parquet") if (folder / "items.parquet").exists() else None
    return Embeddings(fingerprint=str(doc["fingerprint"]), dim=int(doc["dim"]), vectors=vectors, rows=rows,
                      items=items, info=doc)
