"""The Evaluate tab's workflow: metrics of the loaded model on a split of its indexed collection,
every direction (:func:`xmr.eval.directions.score_directions`), the directions a zero-shot
checkpoint never trained, and a comparison with a second checkpoint.

Example::

    evaluation = Evaluation(service)
    report = evaluation.test_split_report()
    print(report["directions"]["audio→image"]["metrics"]["MRR"])
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr.app.service import RetrievalService, safe_name
from xmr.errors import InputError, XmrError
from xmr.eval.directions import score_directions
from xmr.eval.metrics import summarize
from xmr.index.query import embed_audio

if TYPE_CHECKING:
    from xmr.models.model import XmrModel

__all__ = ["Evaluation", "directions_report", "split_report", "split_vectors"]


class Evaluation:
    """Split metrics (computed once per split, cached on disk by fingerprint) and checkpoint
    comparison over the loaded model and indexes.

    Args:
        service: the loaded model, indexes and manifest.
    """

    def __init__(self, service: RetrievalService):
        self.service = service
        self._lock = threading.Lock()
        self._reports: dict[str, dict[str, Any]] = {}

    def test_split_report(self, *, split: str = "test", max_queries: int = 2000) -> dict[str, Any]:
        """Metrics of the loaded model on a split of the indexed collection, every direction.

        Uses the indexed vectors (no re-embedding); a query's relevant item is the same item in the
        other modality (one-to-one protocol). Computed once, then cached on disk by fingerprint.

        Returns:
            ``{"split", "fingerprint", "directions": {"audio→image": {"metrics": {...}, "ranks": [...],
            "n_candidates": N, "n_queries": Q, ...}, ...}, "untrained": [...]}``
        """
        report = self._reports.get(split)
        if report is not None:
            return report
        with self._lock:
            report = self._reports.get(split)
            if report is None:
                report = self._cached_or_computed(split, max_queries=max_queries)
                self._reports[split] = report
            return report

    def _cached_or_computed(self, split: str, *, max_queries: int) -> dict[str, Any]:
        service = self.service
        cache = Path(service.config.cache_dir) / "eval" / f"{safe_name(service.fingerprint)}-{split}.json"
        if cache.exists():
            try:
                return json.loads(cache.read_text())
            except (OSError, ValueError):
                pass
        report = split_report(service, split=split, max_queries=max_queries)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(report))
            tmp.replace(cache)
        except OSError:  # a read-only cache only costs a recomputation next time
            pass
        return report

    def compare(self, checkpoint: str | Path, *, split: str = "test", max_items: int = 200) -> dict[str, Any]:
        """Compare the loaded model with a second checkpoint on the same items of a split.

        The second model embeds a seeded sample of at most ``max_items`` items of the split (media
        rendered on demand); the loaded model's indexed vectors of the same items are used, so both
        rank the same candidates. Per direction: both models' metrics and a paired randomization
        test and t-test on the per-query reciprocal ranks (``xmr.eval.compare``).

        Raises:
            InputError: the checkpoint folder does not exist.
            XmrError: the split has fewer than two items to compare on.
        """
        import xmr
        from xmr.eval.compare import compare_per_query

        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise InputError(f"the checkpoint folder {path} does not exist")
        other = xmr.load_model(path)
        mine = split_vectors(self.service, split)
        common = sorted(set.intersection(*(set(ids) for _, ids in mine.values()))) if mine else []
        if len(common) > max_items:
            common = sorted(np.random.default_rng(0).choice(common, size=max_items, replace=False).tolist())
        if len(common) < 2:
            raise XmrError(f"the {split} split has too few items to compare on")
        a_vecs, b_vecs = {}, {}
        for m, (v, ids) in mine.items():
            if m not in other.modalities:
                continue
            pos = {i: n for n, i in enumerate(ids)}
            a_vecs[m] = (v[[pos[i] for i in common]], common)
            b_vecs[m] = (self._embed_items(other, m, common), common)
        a = directions_report(a_vecs)
        b = directions_report(b_vecs)
        rows = {}
        for d in a:
            if d in b:
                rows[d] = {"a": a[d]["metrics"], "b": b[d]["metrics"],
                           "test": compare_per_query(a[d]["rr"], b[d]["rr"], n_resamples=5000)}
        return {"a": self.service.fingerprint, "b": str(other.fingerprint), "n_items": len(common),
                "directions": rows}

    def _embed_items(self, model: XmrModel, modality: str, item_ids: list[str]) -> np.ndarray:
        """(N, D) vectors of items by another model: the first caption, the image, or the track vector
        of the audio windowed as the index embeds it."""
        service = self.service
        if modality == "text":
            vecs = model.encode("text", [service.captions(i)[0] for i in item_ids])
        elif modality == "audio":
            from xmr.media.audio import load_audio

            waves = [load_audio(str(service.media(i, "audio")), sample_rate=int(model.sample_rate))
                     for i in item_ids]
            vecs = np.stack([t.vector for t in embed_audio(model, waves)])
        else:
            vecs = model.encode(modality, [str(service.media(i, modality)) for i in item_ids])
        return np.asarray(vecs, dtype=np.float32)


def split_vectors(service: RetrievalService, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per modality, one indexed vector per item of the split (the first, e.g. of the first caption)."""
    df = service.manifest
    in_split = set(df.loc[df["split"] == split, "id"].astype(str)) if "split" in df.columns else \
        set(df["id"].astype(str))
    out = {}
    for m in service.targets():
        v, ids = service.index.vectors(m)
        first: dict[str, int] = {}
        for n, i in enumerate(ids):
            if i in in_split and i not in first:
                first[i] = n
        order = sorted(first)
        out[m] = (v[[first[i] for i in order]], order)
    return out


def directions_report(vectors: Mapping[str, tuple[np.ndarray, list[str]]], *, max_queries: int = 2000,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Every direction between the modalities, one-to-one relevance (an item's own other view),
    scored by :func:`xmr.eval.directions.score_directions`.

    Args:
        vectors: modality → ((N, D) vectors, N item ids).
        max_queries: a seeded subsample of queries above this many (candidates are never cut).

    Returns:
        ``{"audio→image": {"metrics": {...}, "ranks": [...], "rr": [...], "query_ids": [...],
        "n_candidates": N, "n_queries": Q}, ...}`` with the metrics of ``xmr.eval`` (chance included).
    """
    out: dict[str, Any] = {}
    for key, d in score_directions(vectors, ks=ks, max_queries=max_queries).items():
        pq = d.per_query
        out[key] = {"metrics": summarize(pq), "ranks": pq.first_rank.astype(int).tolist(),
                    "rr": pq.rr.tolist(), "query_ids": d.query_ids, "n_candidates": d.n_candidates,
                    "n_queries": len(d.query_ids)}
    return out


def split_report(service: RetrievalService, *, split: str, max_queries: int = 2000) -> dict[str, Any]:
    """Metrics of every direction on one split, from the indexed vectors (not cached), and the
    directions that a zero-shot checkpoint never trained."""
    from xmr.models.zero_shot import untrained_directions

    directions = directions_report(split_vectors(service, split), max_queries=max_queries)
    # a zero-shot checkpoint of pretrained towers: directions whose towers share no space
    untrained = [d for d in untrained_directions(service.config.checkpoint) if d in directions]
    return {"split": split, "fingerprint": service.fingerprint, "directions": directions,
            "untrained": untrained}
