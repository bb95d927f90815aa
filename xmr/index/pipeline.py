"""Stage functions over folders: build indexes from embeddings, search an index (``xmr search``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.errors import CheckpointMismatchError, InputError, MissingAssetError
from xmr.index.query import encode_query
from xmr.index.store import MODALITIES, Hit, IndexStore

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

# Media paths of this machine stay out of the index metadata (it may be shipped); the app and the
# CLI find media through the manifest.
_DROP_COLUMNS = ("audio", "image", "audio_unseen")


def build_indexes(
    *,
    embeddings: str | Path,
    out: str | Path,
    factory: str = "auto",
    memory_budget: int | str | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    seed: int = 0,
) -> IndexStore:
    """Build one tuned FAISS index per modality (plus audio windows) from an embeddings folder.

    Args:
        embeddings: folder written by ``xmr embed`` / :func:`xmr.index.embed_manifest`.
        out: index folder to write.
        factory: ``"auto"`` or a FAISS factory string used for every modality.
        memory_budget: bytes or ``"2G"`` for all indexes together (``auto`` only).
        target_recall: recall@k vs exact search, measured with cross-modal queries.
        k: the recall cut-off.
        seed: training/tuning sample seed.

    Example:
        >>> store = build_indexes(embeddings="runs/emb", out="runs/index")  # doctest: +SKIP
        >>> store.info["audio"]["factory"], store.info["audio"]["recall"]  # doctest: +SKIP
        ('Flat', 1.0)
    """
    from xmr.index.embed import load_embeddings

    if not 0.0 < float(target_recall) <= 1.0:
        raise InputError(f"target recall must be in (0, 1], got {target_recall}")
    emb = load_embeddings(embeddings)
    items = emb.items
    vectors, metadata = {}, {}
    for name, arr in emb.vectors.items():
        if not len(arr):
            continue
        rows = emb.rows[name].copy()
        if items is not None:
            extra = items.drop(columns=[c for c in _DROP_COLUMNS if c in items.columns])
            extra = extra.assign(id=extra["id"].astype(str))
            if "caption" in rows.columns:
                extra = extra.drop(columns=["caption"])
            extra = extra.drop(columns=[c for c in extra.columns if c in rows.columns and c != "id"])
            rows = rows.assign(id=rows["id"].astype(str)).merge(extra, on="id", how="left", sort=False)
        vectors[name] = np.asarray(arr, dtype=np.float32)
        metadata[name] = rows
    out = Path(out)
    info = emb.info
    ckpt = info.get("checkpoint")
    extra_doc = {
        "checkpoint": _relative(ckpt, out) if ckpt else None,
        "sample_rate": info.get("sample_rate"),
        "audio_window_seconds": info.get("audio_window_seconds"),
        "window_overlap": info.get("window_overlap"),
    }
    store = IndexStore.build(vectors, metadata, fingerprint=emb.fingerprint, factory=factory,
                             memory_budget=memory_budget, target_recall=target_recall, k=k, seed=seed,
                             extra=extra_doc)
    store.save(out)
    return store


def index_checkpoint(index: str | Path, checkpoint: str | Path | None = None) -> Path:
    """``checkpoint``, or else the checkpoint folder recorded in ``index/index.json``."""
    if checkpoint is not None:
        return Path(checkpoint)
    index = Path(index)
    recorded = IndexStore.load(index).extra.get("checkpoint")
    if not recorded:
        raise InputError("the index does not record its checkpoint; pass --checkpoint")
    path = (index / recorded) if not Path(recorded).is_absolute() else Path(recorded)
    if not path.exists():
        raise MissingAssetError(f"the index's checkpoint {path} is missing; pass --checkpoint")
    return path


def add_hubness(
    *,
    index: str | Path,
    manifest: str | Path,
    checkpoint: str | Path | None = None,
    split: str = "train",
    n: int = 1200,
    k: int = 30,
    beta: float = 1.0,
    targets: Sequence[str] = ("audio", "image"),
    seed: int = 0,
) -> IndexStore:
    """Give the ``targets`` indexes of an index folder hubness offsets (:mod:`xmr.index.hubness`)
    from a query bank of ``n`` items of the manifest's ``split``, and save the folder.

    Example:
        >>> add_hubness(index="runs/index", manifest="data/corpus/manifest.parquet")  # doctest: +SKIP
    """
    import xmr
    from xmr.data.manifest import read_manifest
    from xmr.index.hubness import index_offsets, query_bank

    index = Path(index)
    model = xmr.load_model(index_checkpoint(index, checkpoint))
    store = IndexStore.load(index, fingerprint=str(model.fingerprint), mmap=False)
    df = read_manifest(manifest)
    rows = df[df["split"] == split] if split else df
    if not len(rows):
        raise InputError(f"the manifest has no {split!r} items for the query bank")
    missing = [t for t in targets if t not in store.names]
    if missing:
        raise InputError(f"the index has no {', '.join(missing)} index; it has {', '.join(store.names)}")
    bank = query_bank(model, rows, n=n, seed=seed)
    for target in targets:
        offsets = index_offsets(*store.vectors(target), target, bank, k=k)
        store.set_offsets(target, offsets, beta=beta, k=int(k), bank_split=split, seed=seed,
                          banks={m: {"queries": len(bank[m][1]), "items": len(set(bank[m][1]))}
                                 for m in offsets})
    store.save(index)
    return store


def record_checkpoint(index: str | Path, checkpoint: str | Path) -> None:
    """Record ``checkpoint`` in ``index/index.json`` as the folder whose model embeds its queries
    (relative to the index), e.g. after both were copied elsewhere; the rest of the file is kept."""
    folder = Path(index)
    doc = json.loads((folder / "index.json").read_text())
    doc["checkpoint"] = _relative(str(checkpoint), folder)
    tmp = folder / ".index.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, folder / "index.json")


def _relative(path: str, base: Path) -> str:
    """``path`` relative to the index folder, so a shipped index does not name this machine's folders."""
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:
        return str(path)


def search(
    *,
    index: str | Path,
    text: Sequence[str] = (),
    audio: Sequence[Any] = (),
    image: Sequence[Any] = (),
    weights: Sequence[float] | None = None,
    k: int = 10,
    targets: Sequence[str] | None = None,
    checkpoint: str | Path | None = None,
    filters: Mapping[str, Any] | None = None,
    model: XmrModel | None = None,
    manifest: str | Path | None = None,
    notes: list[str] | None = None,
) -> list[Hit]:
    """Search an index folder with a (possibly multi-modal) query: the ``xmr search`` command.

    Args:
        index: index folder.
        text / audio / image: query inputs (strings, audio files, image files).
        weights: one weight per input, in the order audio, image, text.
        k: number of results.
        targets: modalities to search (default: every modality of the index).
        checkpoint: checkpoint folder (default: the one recorded in ``index.json``).
        filters: metadata filters (``{"split": "test"}``).
        model: an already loaded model.
        manifest: the manifest of the indexed items: with an audio query, each hit whose item has a
            bar alignment gets the bars of its score that match best (``Hit.bars``, :mod:`xmr.index.bars`).
        notes: a list to append what the user should know about the query to (:attr:`EncodedQuery.notes`:
            a clip cut into windows, a picture read as a photographed page, ...).

    Example:
        >>> for h in search(index="runs/index", text=["a jig on flute"], k=5):  # doctest: +SKIP
        ...     print(h.rank, h.item_id, h.modality, round(h.score, 3), h.start)
    """
    import xmr

    index = Path(index)
    if model is None:
        model = xmr.load_model(index_checkpoint(index, checkpoint))
    store = IndexStore.load(index, fingerprint=str(model.fingerprint))
    if store.fingerprint != str(model.fingerprint):  # pragma: no cover - load() already refuses
        raise CheckpointMismatchError(f"index {store.fingerprint} vs model {model.fingerprint}")
    query = encode_query(model, audio=list(audio), image=list(image), text=list(text), weights=weights)
    if notes is not None:
        notes.extend(query.notes)
    targets = list(targets) if targets else store.modalities
    unknown = [t for t in targets if t not in (*MODALITIES, "audio_windows")]
    if unknown:
        raise InputError(f"unknown target {', '.join(unknown)}; choose from audio, image, text")
    hits = store.search(query.vector, targets=targets, k=k, filters=filters, query=query.banks)[0]
    if manifest is not None and query.bar_query() is not None:
        locate_hit_bars(model, query, hits, manifest)
    return hits


def locate_hit_bars(model: XmrModel, query, hits: Sequence[Hit], manifest: str | Path) -> None:
    """Set ``Hit.bars`` of each hit whose item has a bar alignment and its media in ``manifest``
    (its audio, which the clip is matched against: :data:`xmr.index.bars.DEFAULT_VIA`)."""
    from xmr.data.files import media_file
    from xmr.data.manifest import read_manifest
    from xmr.index.bars import BarLocator

    df = read_manifest(manifest)
    rows = {str(i): n for n, i in enumerate(df["id"].astype(str))}
    locator = BarLocator(model)
    bar_query = query.bar_query()
    for h in hits:
        if h.item_id not in rows:
            continue
        row = df.iloc[rows[h.item_id]]
        h.bars = locator.locate(bar_query, row, lambda row=row: media_file(
            row, locator.via, manifest_dir=Path(manifest).parent))
