"""The evaluation hook of the trainer: embed a split and score every retrieval direction.

Audio items are embedded as in Nakatsuka et al. 2023's test protocol (Sec. 4.1.2): the mean of the
embeddings of fixed crops of the model's window with 50% overlap, re-normalised. Relevance is
one-to-one for audio↔image (the item itself); for a text side, every item whose caption is the
*same string* counts as relevant (generic captions repeat, and an identical caption cannot be
told apart by any model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmr.eval import protocols
from xmr.eval.directions import score_directions
from xmr.eval.metrics import summarize

PAIRS = (("audio", "image"), ("audio", "text"), ("image", "text"))
SUMMARY_KEYS = ("R@1", "R@5", "R@10", "MRR", "MedR")


def embed_audio_items(adapter, items, indices: list[int], *, batch_size: int = 32,
                      wave_fn=None) -> np.ndarray:
    """Track embeddings (N, D) of items' audio, windowed and pooled as the index embeds tracks
    (:func:`xmr.index.embed_tracks`), through the training model in eval mode.

    Args:
        wave_fn: optional ``index -> waveform`` (e.g. the unseen-soundfont rendering); default the
            store's cached audio.
    """
    import torch

    from xmr.index.windows import embed_tracks

    model = adapter.unwrapped
    win = adapter.audio_samples

    def encode(crops: list[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start:start + batch_size]
            x = np.stack([np.pad(c, (0, win - len(c))) for c in chunk])  # (B, T)
            lengths = torch.tensor([max(min(len(c), win), 1) for c in chunk])  # read by sequence towers
            with torch.no_grad():
                emb = model.embed("audio", torch.from_numpy(x.astype(np.float32)).to(adapter.device),
                                  lengths=lengths)
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, adapter.embed_dim), np.float32)

    waves = [wave_fn(i) if wave_fn is not None else items.waveform(i) for i in indices]
    sr = int(model.sample_rate)
    tracks = embed_tracks(encode, waves, sample_rate=sr, window_seconds=win / sr)
    if not tracks:
        return np.zeros((0, adapter.embed_dim), np.float32)
    return np.stack([t.vector for t in tracks]).astype(np.float32)


def embed_items(adapter, items, *, modalities=("audio", "image", "text"), caption_index: int = 0,
                batch_size: int = 32, indices: list[int] | None = None) -> dict[str, np.ndarray]:
    """Embeddings of a split's items per modality (eval mode; text = caption number ``caption_index``)."""
    import torch

    model = adapter.unwrapped
    indices = list(range(len(items))) if indices is None else list(indices)
    was = model.training
    model.eval()
    out: dict[str, np.ndarray] = {}
    try:
        with torch.no_grad():
            if "audio" in modalities:
                out["audio"] = embed_audio_items(adapter, items, indices, batch_size=batch_size)
            if "image" in modalities:
                chunks = []
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    x = torch.stack([items.image(i) for i in chunk])
                    widths = getattr(items, "image_widths", None)  # content columns, for sequence towers
                    widths = torch.as_tensor(np.asarray(widths)[chunk]) if widths is not None else None
                    emb = model.embed("image", x.to(adapter.device), lengths=widths)
                    chunks.append(emb.float().cpu().numpy())
                out["image"] = np.concatenate(chunks)
            if "text" in modalities:
                texts = [caption_of(items, i, caption_index) for i in indices]
                chunks = [adapter.embed_text(texts[s:s + batch_size]).float().cpu().numpy()
                          for s in range(0, len(texts), batch_size)]
                out["text"] = np.concatenate(chunks)
    finally:
        model.train(was)
    return out


def caption_of(items, index: int, caption_index: int) -> str:
    caps = items.captions[index]
    if not caps:
        return ""
    return caps[min(caption_index, len(caps) - 1)]


def score_items(emb: dict[str, np.ndarray], *, texts: list[str] | None = None,
                present: dict[str, np.ndarray] | None = None,
                ks=(1, 5, 10)) -> dict[str, dict[str, Any]]:
    """All directions between the modalities in ``emb`` (row i = item i) → ``{"audio→image": metrics}``.

    Scored by :func:`xmr.eval.directions.score_directions`, one pair of modalities at a time over
    the items that have both (``present``). A text side's relevant items are those whose caption
    is the same string (``texts``, one per item); otherwise the item itself.
    """
    results: dict[str, dict[str, Any]] = {}
    n = len(next(iter(emb.values())))
    for a, b in PAIRS:
        if a not in emb or b not in emb:
            continue
        keep = np.ones(n, bool)
        if present is not None:
            keep &= present.get(a, keep) & present.get(b, keep)
        ids = [str(i) for i in np.flatnonzero(keep)]
        caption = {i: texts[int(i)] for i in ids} if texts is not None else None

        def relevance(q: str, t: str, q_ids: list[str], t_ids: list[str], caption=caption):
            if caption is None or "text" not in (q, t):
                return protocols.item_relevance(q_ids, t_ids)
            return protocols.shared_key_relevance([(caption[i],) for i in q_ids],
                                                  [(caption[i],) for i in t_ids])

        scored = score_directions({a: (emb[a][keep], ids), b: (emb[b][keep], ids)}, relevance, ks=ks)
        for key, result in scored.items():
            results[key] = {**summarize(result.per_query), "candidates": result.n_candidates}
    return results


def evaluate_items(adapter, items, *, modalities=("audio", "image", "text"), caption_index: int = 0,
                   flat: bool = True) -> dict[str, Any]:
    """Embed ``items`` and score every direction; flat form ``{"audio→image/MRR": 0.41, ...}``."""
    emb = embed_items(adapter, items, modalities=modalities, caption_index=caption_index)
    texts = [caption_of(items, i, caption_index) for i in range(len(items))] if "text" in emb else None
    present = {m: np.asarray(items.has[m], bool) for m in emb}
    results = score_items(emb, texts=texts, present=present)
    if not flat:
        return results
    out: dict[str, Any] = {}
    for direction, metrics in results.items():
        for key in SUMMARY_KEYS:
            if key in metrics:
                out[f"{direction}/{key}"] = float(metrics[key])
    return out
