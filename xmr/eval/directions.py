"""Every retrieval direction between sets of vectors, scored once.

The trainer's validation, ``xmr eval`` and the app's Evaluate tab all score their directions here:
each query row is ranked against every candidate row by cosine (the vectors are unit rows), and
:func:`xmr.eval.per_query_metrics` turns the ranks into per-query results. A direction is named
``"audio→image"`` (queries → candidates) by :func:`direction_key`, the one spelling of a
direction in reports, logs and the app.

Example::

    scores = score_directions({"audio": (audio_vecs, ids), "image": (image_vecs, ids)})
    summarize(scores["audio→image"].per_query)["MRR"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmr.eval import protocols
from xmr.eval.metrics import PerQuery, ScoreRows, per_query_metrics

# (query name, target name, query item ids, target item ids) -> relevance, or None to skip
Relevance = Callable[[str, str, list[str], list[str]], Any]


def direction_key(query: str, target: str) -> str:
    """The name of a direction: ``direction_key("audio", "image") == "audio→image"``."""
    return f"{query}→{target}"


def split_direction(key: str) -> tuple[str, str]:
    """Inverse of :func:`direction_key`."""
    query, _, target = key.partition("→")
    return query, target


@dataclass(frozen=True)
class DirectionScores:
    """The per-query results of one direction.

    Attributes:
        query: name of the query side (a modality, or a view such as ``"text[full]"``).
        target: name of the candidate side.
        per_query: ranks and metrics of each query (:class:`xmr.eval.metrics.PerQuery`).
        query_ids: the item of each query row (after any subsampling).
        n_candidates: how many candidate rows each query was ranked against.
    """

    query: str
    target: str
    per_query: PerQuery
    query_ids: list[str]
    n_candidates: int


def same_item(query: str, target: str, query_ids: list[str], target_ids: list[str]):
    """The default relevance: a candidate row of the query's own item (:func:`protocols.item_relevance`)."""
    return protocols.item_relevance(query_ids, target_ids)


def score_directions(
    vectors: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    relevance: Relevance | None = None,
    *,
    modalities: Mapping[str, str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    max_queries: int | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
) -> dict[str, DirectionScores]:
    """Both directions of every pair of vector sets of different modalities.

    Args:
        vectors: name → ((N, D) unit vectors, the item id of each row); several rows may share
            an item (the captions of an item).
        relevance: ``(query, target, query_ids, target_ids)`` → a relevance that
            :func:`xmr.eval.per_query_metrics` accepts ((Q, N) array, sparse matrix, or a function
            of a row range), or ``None`` to leave that direction out. Default :func:`same_item`.
        modalities: name → modality (default: the name is the modality); sets of the same
            modality are not scored against each other.
        ks: the cut-offs K.
        max_queries: above this many query rows, a seeded subsample of them (candidates are never
            cut); one generator serves every direction, in order.
        seed: the seed of that subsample.
        chunk_size: query rows scored at a time (memory bound; results do not depend on it).

    Returns:
        :func:`direction_key` → :class:`DirectionScores`, in the order of
        :func:`xmr.eval.protocols.directions` (``audio→image``, ``image→audio``, ``audio→text``...).

    Example:
        >>> ids = ["x", "y", "z"]
        >>> out = score_directions({"audio": (np.eye(3), ids), "image": (np.eye(3), ids)}, ks=(1,))
        >>> list(out), float(out["audio→image"].per_query.rr.mean())
        (['audio→image', 'image→audio'], 1.0)
    """
    mods = {name: (modalities or {}).get(name, name) for name in vectors}
    relevance = relevance or same_item
    rng = np.random.default_rng(seed)
    out: dict[str, DirectionScores] = {}
    for q, t in protocols.directions(mods):
        q_vecs, q_ids = vectors[q]
        t_vecs, t_ids = vectors[t]
        rows = np.arange(len(q_ids))
        if max_queries is not None and len(rows) > max_queries:
            rows = np.sort(rng.choice(len(rows), size=max_queries, replace=False))
        query_ids = [str(q_ids[i]) for i in rows]
        rel = relevance(q, t, query_ids, [str(i) for i in t_ids])
        if rel is None:
            continue
        scores = ScoreRows(np.asarray(q_vecs, dtype=np.float32)[rows], np.asarray(t_vecs, dtype=np.float32))
        pq = per_query_metrics(scores, rel, ks=tuple(ks), chunk_size=chunk_size)
        out[direction_key(q, t)] = DirectionScores(query=q, target=t, per_query=pq, query_ids=query_ids,
                                                   n_candidates=int(len(t_ids)))
    return out
