"""Stage functions over folders: build indexes from embeddings, encode a query, search an index."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmr.errors import CheckpointMismatchError, InputError, MissingAssetError
from xmr.index.fusion import fuse_queries
from xmr.index.store import MODALITIES, Hit, IndexStore

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


def _relative(path: str, base: Path) -> str:
    """``path`` relative to the index folder, so a shipped index does not name this machine's folders."""
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:
        return str(path)


def encode_query(
    model: Any,
    *,
    text: Sequence[str] = (),
    audio: Sequence[Any] = (),
    image: Sequence[Any] = (),
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Embed the inputs of one query and fuse them into one (D,) unit vector.

    Inputs are taken in the order text..., audio..., image...; ``weights`` gives one weight per
    input in that order (default 1 each). Audio longer than the model's window is windowed and
    mean-pooled exactly as indexed tracks are, so the same file always gives the same vector.

    Example:
        >>> q = encode_query(model, text=["a slow chorale"], image=["score.png"],  # doctest: +SKIP
        ...                  weights=[1, 0.5])
    """
    from xmr.index.windows import embed_tracks
    from xmr.media.audio import load_audio

    parts: list[np.ndarray] = []
    for t in text:
        try:
            from xmr.media.text import normalize_text

            t = normalize_text(t).text
        except ImportError:
            pass
        parts.append(model.encode("text", [t])[0])
    for a in audio:
        wave = a if isinstance(a, np.ndarray) else load_audio(a, sample_rate=int(model.sample_rate))
        track = embed_tracks(lambda w: model.encode("audio", w), [wave], sample_rate=int(model.sample_rate),
                             window_seconds=float(model.audio_window_seconds))[0]
        parts.append(track.vector)
    for im in image:
        if isinstance(im, str | os.PathLike) and not Path(im).is_file():
            raise InputError(f"image file not found: {im}")
        parts.append(model.encode("image", [str(im) if isinstance(im, os.PathLike) else im])[0])
    if not parts:
        raise InputError("give at least one query input: --text, --audio or --image")
    return fuse_queries(parts, weights)[0]


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
    model: Any = None,
) -> list[Hit]:
    """Search an index folder with a (possibly multi-modal) query: the ``xmr search`` command.

    Args:
        index: index folder.
        text / audio / image: query inputs (strings, audio files, image files).
        weights: one weight per input, in the order text, audio, image.
        k: number of results.
        targets: modalities to search (default: every modality of the index).
        checkpoint: checkpoint folder (default: the one recorded in ``index.json``).
        filters: metadata filters (``{"split": "test"}``).
        model: an already loaded model.

    Example:
        >>> for h in search(index="runs/index", text=["a jig on flute"], k=5):  # doctest: +SKIP
        ...     print(h.rank, h.id, h.modality, round(h.score, 3), h.start)
    """
    import xmr

    index = Path(index)
    if model is None:
        if checkpoint is None:
            store_peek = IndexStore.load(index)
            recorded = store_peek.extra.get("checkpoint")
            if not recorded:
                raise InputError("the index does not record its checkpoint; pass --checkpoint")
            checkpoint = (index / recorded) if not Path(recorded).is_absolute() else Path(recorded)
            if not Path(checkpoint).exists():
                raise MissingAssetError(f"the index's checkpoint {checkpoint} is missing; pass --checkpoint")
        model = xmr.load_model(checkpoint)
    store = IndexStore.load(index, fingerprint=str(model.fingerprint))
    if store.fingerprint != str(model.fingerprint):  # pragma: no cover - load() already refuses
        raise CheckpointMismatchError(f"index {store.fingerprint} vs model {model.fingerprint}")
    vector = encode_query(model, text=text, audio=audio, image=image, weights=weights)
    targets = list(targets) if targets else store.modalities
    unknown = [t for t in targets if t not in (*MODALITIES, "audio_windows")]
    if unknown:
        raise InputError(f"unknown target {', '.join(unknown)}; choose from audio, image, text")
    return store.search(vector[None, :], targets=targets, k=k, filters=filters)[0]
