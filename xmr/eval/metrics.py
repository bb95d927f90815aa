"""Ranking metrics of cross-modal retrieval, equal to trec_eval's on the same input.

Every metric is computed from one number per relevant item: its 1-based rank in the query's full
ranking of the candidates. The ranking sorts by score, descending; **ties are broken by candidate
index, ascending** (the item that comes first in the candidate list wins the tie). trec_eval breaks
ties by document name, descending, so a run written with :func:`xmr.eval.trec.run_from_scores`
(whose document names sort the other way round) is ranked identically by trec_eval.

The rank of a relevant item ``j`` of query ``q`` is
``1 + #{i : s[q, i] > s[q, j]} + #{i < j : s[q, i] == s[q, j]}``: a few comparisons per relevant
item instead of a full sort. Rows with many relevant items fall back to one stable ``argsort``.
Queries are processed in chunks of rows so that the temporary arrays stay bounded (about
``chunk_size * n_candidates`` elements), which is what lets a 20,000 x 20,000 evaluation run in a
few hundred MB on top of its inputs.

Definitions (``R`` = number of relevant items of a query, ``r_1 < r_2 < ... < r_R`` their ranks,
``g`` their grades; averages are over the queries that have at least one relevant item):

- ``R@K`` (hit rate, the cross-modal convention; trec_eval ``success_K``): 1 if ``r_1 <= K``.
- ``recall@K`` (IR recall; ``recall_K``): ``#{r_i <= K} / R``.
- ``P@K`` (``P_K``): ``#{r_i <= K} / K``. ``F1@K``: per-query ``2 P R / (P + R)``, averaged.
- ``MRR`` (``recip_rank``): mean of ``1 / r_1``. ``MedR`` and ``MeanR``: median and mean of ``r_1``.
- ``mAP`` (``map``): mean of ``AP = (1/R) sum_i i / r_i`` (Wang et al. 2023, Sec. 5, eqs. (6)–(7)).
- ``mAP@10`` (``map_cut_10``): ``(1/R) sum_{i: r_i <= 10} i / r_i`` -- the top-10 truncated AP
  normalised by *all* relevant items, as the audio-text retrieval literature reports it (Mei et
  al. 2022; DCASE 2022 task 6b, where ``R = 1`` makes it ``1/r_1`` if ``r_1 <= 10``).
- ``nDCG@K`` (``ndcg_cut_K``): ``sum_{r_i <= K} g_i / log2(r_i + 1)`` over the same sum for the
  ideal order of the grades (linear gains, as trec_eval). Boolean relevance means every gain is 1.
- Interpolated precision at the 11 recall levels 0.0, 0.1, ..., 1.0 (``iprec_at_recall``): the
  best precision at any rank at or after the one where ``floor(level R + 0.9)`` relevant items
  have been seen (trec_eval's rounding of the level to a count): the precision-recall curve.

Graded relevance: pass an integer array; a grade > 0 is relevant (trec_eval's relevance level 1),
the grade is the gain of nDCG. Queries without any relevant item are left out of every average
(trec_eval ignores queries absent from the qrels) and counted in ``n_queries_without_relevant``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmr.errors import InputError

# A row with more relevant items than this is ranked by one argsort instead of comparisons.
_SORT_THRESHOLD = 48
# Default bound on the temporary (rows x candidates) arrays of one chunk, in elements.
_CHUNK_ELEMENTS = 1 << 23
RECALL_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class PerQuery:
    """Per-query results of :func:`per_query_metrics` (arrays of length Q, one row per query).

    ``first_rank`` is the 1-based rank of the best-ranked relevant item (0 where the query has no
    relevant item; those queries have NaN in the float arrays). ``hit``, ``recall``, ``precision``,
    ``ndcg`` map K to arrays; ``iprec`` is (Q, 11), the interpolated precision at RECALL_LEVELS.
    ``gain_sum`` and ``idcg`` (per K) are kept for the random-chance values of nDCG.
    """

    ks: tuple[int, ...]
    n_candidates: int
    n_relevant: np.ndarray
    first_rank: np.ndarray
    rr: np.ndarray
    ap: np.ndarray
    ap10: np.ndarray
    hit: dict[int, np.ndarray] = field(default_factory=dict)
    recall: dict[int, np.ndarray] = field(default_factory=dict)
    precision: dict[int, np.ndarray] = field(default_factory=dict)
    ndcg: dict[int, np.ndarray] = field(default_factory=dict)
    iprec: np.ndarray | None = None
    gain_sum: np.ndarray | None = None
    idcg: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        """Mask of the queries with at least one relevant item."""
        return self.n_relevant > 0

    def values(self, name: str) -> np.ndarray:
        """Per-query values of a summary metric name (``"MRR"``, ``"R@5"``, ``"nDCG@10"``, ...)."""
        fixed = {"MRR": self.rr, "mAP": self.ap, "mAP@10": self.ap10,
                 "rank": self.first_rank.astype(np.float64)}
        if name in fixed:
            return fixed[name]
        base, _, k = name.partition("@")
        table = {"R": self.hit, "recall": self.recall, "P": self.precision, "nDCG": self.ndcg}
        if base == "F1" and k:
            p, r = self.precision[int(k)], self.recall[int(k)]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(p + r > 0, 2 * p * r / (p + r), 0.0) + 0 * p
        if base not in table or not k or int(k) not in table[base]:
            raise InputError(f"unknown per-query metric {name!r}")
        return table[base][int(k)]


def _check_ks(ks) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise InputError(f"cut-offs must be positive integers, got {ks}")
    return tuple(sorted(set(ks)))


def _grades_of(block: np.ndarray) -> np.ndarray:
    """Integer grades of a relevance block (bool -> 0/1); rejects negative or fractional grades."""
    if block.dtype == bool:
        return block
    if np.issubdtype(block.dtype, np.floating):
        if not np.all(np.isfinite(block)) or np.any(block != np.round(block)):
            raise InputError("relevance must be boolean or integer grades (0 = not relevant)")
        block = block.astype(np.int64)
    elif not np.issubdtype(block.dtype, np.integer):
        raise InputError(f"relevance must be boolean or integer grades, got dtype {block.dtype}")
    if block.size and block.min() < 0:
        raise InputError("relevance grades must be >= 0")
    return block


def _triplets(rel_block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, grade) of the relevant entries of a dense or scipy.sparse block."""
    if hasattr(rel_block, "tocoo"):
        coo = rel_block.tocoo()
        grades = _grades_of(np.asarray(coo.data)).astype(np.float64)
        keep = grades > 0
        return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), grades[keep]
    block = _grades_of(np.asarray(rel_block))
    rows, cols = np.nonzero(block)
    return rows.astype(np.int64), cols.astype(np.int64), block[rows, cols].astype(np.float64)


def _ranks_by_comparison(s: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_elems: int) -> np.ndarray:
    """1-based ranks of (row, col) entries of score block ``s``, in batches of pairs."""
    n = s.shape[1]
    out = np.empty(len(rows), dtype=np.int64)
    step = max(1, max_elems // max(n, 1))
    idx = np.arange(n)
    for a in range(0, len(rows), step):
        r, c = rows[a:a + step], cols[a:a + step]
        sp = s[r]  # (P, N) copy of the rows of these pairs
        v = sp[np.arange(len(r)), c][:, None]
        beaten = np.count_nonzero(sp > v, axis=1)
        tied_before = np.count_nonzero((sp == v) & (idx[None, :] < c[:, None]), axis=1)
        out[a:a + step] = 1 + beaten + tied_before
    return out


def _ranks_by_sort(s: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_elems: int) -> np.ndarray:
    """Same as :func:`_ranks_by_comparison` through one stable argsort per row (many relevant)."""
    n = s.shape[1]
    out = np.empty(len(rows), dtype=np.int64)
    uniq, inv = np.unique(rows, return_inverse=True)
    step = max(1, max_elems // max(n, 1))
    for a in range(0, len(uniq), step):
        sel_rows = uniq[a:a + step]
        order = np.argsort(-s[sel_rows], axis=1, kind="stable")  # descending score, index ascending
        rank_of = np.empty_like(order)
        np.put_along_axis(rank_of, order, np.arange(1, n + 1)[None, :].repeat(len(sel_rows), 0), axis=1)
        mask = (inv >= a) & (inv < a + step)
        out[mask] = rank_of[inv[mask] - a, cols[mask]]
    return out


def _group_positions(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """For pairs sorted by row: count per row and the 1-based position of each pair in its row."""
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(rows)) - starts[rows] + 1
    return counts, pos


def _suffix_max_by_row(values: np.ndarray, rows: np.ndarray, pos: np.ndarray,
                       counts: np.ndarray) -> np.ndarray:
    """(B, max R) array: entry [r, i] = max of row r's values at positions >= i (values >= 0)."""
    width = int(counts.max()) if len(counts) else 0
    grid = np.zeros((len(counts), max(width, 1)))  # padding 0 never raises a maximum
    grid[rows, pos - 1] = values
    return np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1]


def _chunk_metrics(s, rel_block, ks, max_elems) -> dict[str, Any]:
    """Per-query metric arrays of one chunk of rows (scores ``s`` (B, N), relevance block)."""
    b, n = s.shape
    if np.issubdtype(s.dtype, np.floating):
        if not np.all(np.isfinite(s)):
            raise InputError("scores contain NaN or infinite values")
    else:
        s = s.astype(np.float64)
    rows, cols, grades = _triplets(rel_block)
    counts = np.bincount(rows, minlength=b)
    heavy = counts[rows] > _SORT_THRESHOLD
    ranks = np.empty(len(rows), dtype=np.int64)
    if np.any(~heavy):
        ranks[~heavy] = _ranks_by_comparison(s, rows[~heavy], cols[~heavy], max_elems)
    if np.any(heavy):
        ranks[heavy] = _ranks_by_sort(s, rows[heavy], cols[heavy], max_elems)

    order = np.lexsort((ranks, rows))
    rows, ranks, grades_r = rows[order], ranks[order], grades[order]
    counts, pos = _group_positions(rows, b)
    has = counts > 0
    nan = np.full(b, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.zeros(b, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first[has] = ranks[starts[has]]
        prec_at_rel = pos / ranks  # precision at the rank of each relevant item
        out: dict[str, Any] = {
            "n_relevant": counts,
            "first_rank": first,
            "rr": np.where(has, 1.0 / np.maximum(first, 1), nan),
            "ap": np.where(has, np.bincount(rows, prec_at_rel, b) / counts, nan),
            "ap10": np.where(has, np.bincount(rows, prec_at_rel * (ranks <= 10), b) / counts, nan),
        }
        # Ideal DCG: the same grades sorted descending within each row (rows are sorted).
        ideal = grades_r[np.lexsort((-grades_r, rows))]
        for k in ks:
            in_k = ranks <= k
            hits = np.bincount(rows, in_k, b)
            out.setdefault("hit", {})[k] = np.where(has, (first <= k) * 1.0, nan)
            out.setdefault("recall", {})[k] = np.where(has, hits / counts, nan)
            out.setdefault("precision", {})[k] = np.where(has, hits / k, nan)
            dcg = np.bincount(rows, in_k * grades_r / np.log2(ranks + 1.0), b)
            idcg = np.bincount(rows, (pos <= k) * ideal / np.log2(pos + 1.0), b)
            out.setdefault("idcg", {})[k] = idcg
            out.setdefault("ndcg", {})[k] = np.where(has, dcg / idcg, nan)
        out["gain_sum"] = np.bincount(rows, grades_r, b)
        # Interpolated precision: the best precision at or below the rank where the level's
        # number of relevant items is reached; that number is trec_eval's (long)(level R + 0.9).
        best_after = _suffix_max_by_row(prec_at_rel, rows, pos, counts)
        iprec = np.full((b, len(RECALL_LEVELS)), np.nan)
        for li, level in enumerate(RECALL_LEVELS):
            need = np.maximum(1, np.floor(level * counts + 0.9).astype(np.int64))
            iprec[has, li] = best_after[np.nonzero(has)[0], need[has] - 1]
        out["iprec"] = iprec
    return out


def per_query_metrics(
    scores,
    relevant,
    *,
    ks=(1, 5, 10),
    chunk_size: int | None = None,
) -> PerQuery:
    """Per-query ranks and metrics (see the module docstring for the definitions).

    Args:
        scores: (Q, N) similarity array (higher = better), or a callable ``f(start, stop)``
            returning rows ``start:stop`` of it (so the full matrix never has to exist).
        relevant: (Q, N) boolean or integer-grade array, a scipy.sparse matrix, or a callable
            ``f(start, stop)`` returning rows ``start:stop`` as either; the callable forms need
            ``scores`` to be an array or to carry ``shape`` (use :class:`ScoreRows`).
        ks: the cut-offs K.
        chunk_size: query rows per chunk; default keeps each chunk near 8M elements.

    Example:
        >>> pq = per_query_metrics(np.eye(3), np.eye(3, dtype=bool))
        >>> pq.first_rank.tolist()
        [1, 1, 1]
    """
    ks = _check_ks(ks)
    shape = getattr(scores, "shape", None)
    if shape is None:
        raise InputError("scores must be an array or a ScoreRows with a shape")
    if callable(scores) and not hasattr(scores, "__getitem__"):
        get_scores = scores
    else:
        scores = scores if hasattr(scores, "__getitem__") else np.asarray(scores)
        get_scores = lambda a, b: scores[a:b]  # noqa: E731
    if len(shape) != 2:
        raise InputError(f"scores must be 2-D (queries x candidates), got shape {tuple(shape)}")
    n_q, n = int(shape[0]), int(shape[1])
    if callable(relevant) and not hasattr(relevant, "__getitem__"):
        get_rel = relevant
        rshape = getattr(relevant, "shape", None)
        if rshape is not None and tuple(rshape) != (n_q, n):
            raise InputError(f"relevance shape {tuple(rshape)} does not match scores {(n_q, n)}")
    else:
        rshape = getattr(relevant, "shape", None)
        if rshape is None:
            relevant = np.asarray(relevant)
            rshape = relevant.shape
        if tuple(rshape) != (n_q, n):
            raise InputError(f"relevance shape {tuple(rshape)} does not match scores {(n_q, n)}")
        if hasattr(relevant, "tocsr"):
            relevant = relevant.tocsr()
        get_rel = lambda a, b: relevant[a:b]  # noqa: E731
    if n == 0:
        raise InputError("there are no candidates to rank")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // n)
    chunk_size = max(1, int(chunk_size))
    max_elems = chunk_size * n

    parts = []
    for a in range(0, n_q, chunk_size):
        b = min(n_q, a + chunk_size)
        s = np.asarray(get_scores(a, b))
        if s.shape != (b - a, n):
            raise InputError(f"score rows {a}:{b} have shape {s.shape}, expected {(b - a, n)}")
        parts.append(_chunk_metrics(s, get_rel(a, b), ks, max_elems))

    def cat(key, k=None):
        if not parts:
            return np.zeros(0)
        return np.concatenate([p[key] if k is None else p[key][k] for p in parts])

    return PerQuery(
        ks=ks,
        n_candidates=n,
        n_relevant=cat("n_relevant").astype(np.int64),
        first_rank=cat("first_rank").astype(np.int64),
        rr=cat("rr"),
        ap=cat("ap"),
        ap10=cat("ap10"),
        hit={k: cat("hit", k) for k in ks},
        recall={k: cat("recall", k) for k in ks},
        precision={k: cat("precision", k) for k in ks},
        ndcg={k: cat("ndcg", k) for k in ks},
        iprec=np.concatenate([p["iprec"] for p in parts]) if parts else np.zeros((0, 11)),
        gain_sum=cat("gain_sum"),
        idcg={k: cat("idcg", k) for k in ks},
    )


class ScoreRows:
    """Rows of ``queries @ candidates.T`` computed on demand, for :func:`per_query_metrics`.

    Args:
        queries: (Q, D) query embeddings.
        candidates: (N, D) candidate embeddings.

    Example:
        >>> rows = ScoreRows(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32))
        >>> rows.shape, rows[0:1].tolist()
        ((2, 2), [[1.0, 0.0]])
    """

    def __init__(self, queries: np.ndarray, candidates: np.ndarray):
        self.queries = np.asarray(queries)
        self.candidates = np.asarray(candidates)
        if self.queries.ndim != 2 or self.candidates.ndim != 2 or (
                self.queries.shape[1] != self.candidates.shape[1]):
            raise InputError(
                f"embedding shapes {self.queries.shape} and {self.candidates.shape} do not match")
        self.shape = (self.queries.shape[0], self.candidates.shape[0])

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self.queries[sl] @ self.candidates.T


# --------------------------------------------------------------------------------------------
# Summaries and random-chance values


def _harmonic(m: int) -> float:
    return float(np.sum(1.0 / np.arange(1, m + 1))) if m > 0 else 0.0


def _first_rank_survival(n: int, r: int) -> np.ndarray:
    """S[t] = P(first relevant rank > t), t = 0..n, for R = r relevant among n in random order."""
    t = np.arange(n)
    terms = np.clip((n - r - t) / (n - t), 0.0, None)
    return np.concatenate([[1.0], np.cumprod(terms)])


def chance_values(pq: PerQuery) -> dict[str, float]:
    """Expected value of every summary metric under a uniformly random ranking.

    Exact expectations over random permutations of the N candidates, averaged over the queries
    that have relevant items: ``R@K = 1 - C(N-R, K) / C(N, K)``, ``recall@K = min(K, N) / N``,
    ``P@K = R min(K, N) / (N K)``, ``MRR = E[1 / r_1]`` and ``MeanR = (N + 1) / (R + 1)`` from the
    law of the first relevant rank, ``mAP = ((1 - a) H_N + a N) / N`` with ``a = (R-1)/(N-1)``
    (``H`` harmonic numbers; the top-10 cut uses ``min(10, N)`` in place of ``N`` inside the
    bracket), ``nDCG@K = (sum g / N) sum_{k <= min(K, N)} 1/log2(k+1) / IDCG@K``. ``MedR`` is the
    median of the first-relevant rank under the mixture of the queries' laws.
    """
    valid = pq.valid
    n = pq.n_candidates
    rs, counts = np.unique(pq.n_relevant[valid], return_counts=True)
    if len(rs) == 0:
        return {}
    w = counts / counts.sum()
    out: dict[str, float] = {}
    mixture_cdf = np.zeros(n + 1)
    rr = mean_r = ap = ap10 = 0.0
    hit = dict.fromkeys(pq.ks, 0.0)
    prec = dict.fromkeys(pq.ks, 0.0)
    f1 = dict.fromkeys(pq.ks, 0.0)
    h_n, m10 = _harmonic(n), min(10, n)
    for r, wi in zip(rs.tolist(), w.tolist(), strict=True):
        surv = _first_rank_survival(n, r)
        pmf = surv[:-1] - surv[1:]  # P(r_1 = t), t = 1..n
        rr += wi * float(np.sum(pmf / np.arange(1, n + 1)))
        mean_r += wi * (n + 1) / (r + 1)
        mixture_cdf += wi * (1.0 - surv)
        a = (r - 1) / (n - 1) if n > 1 else 0.0
        ap += wi * ((1 - a) * h_n + a * n) / n
        ap10 += wi * ((1 - a) * _harmonic(m10) + a * m10) / n
        for k in pq.ks:
            hit[k] += wi * (1.0 - surv[min(k, n)])
            prec[k] += wi * r * min(k, n) / (n * k)
            f1[k] += wi * 2.0 * r * min(k, n) / n / (k + r)
    for k in pq.ks:
        disc = float(np.sum(1.0 / np.log2(np.arange(2, min(k, n) + 2))))
        ndcg = pq.gain_sum[valid] / n * disc / pq.idcg[k][valid]
        out[f"R@{k}"] = float(hit[k])
        out[f"recall@{k}"] = min(k, n) / n
        out[f"P@{k}"] = prec[k]
        out[f"F1@{k}"] = f1[k]
        out[f"nDCG@{k}"] = float(np.mean(ndcg))
    out["MRR"] = rr
    out["MedR"] = float(np.searchsorted(mixture_cdf, 0.5 - 1e-12))
    out["MeanR"] = mean_r
    out["mAP"] = ap
    out["mAP@10"] = ap10
    return out


def chance_rank_cdf(pq: PerQuery) -> np.ndarray:
    """P(first relevant rank <= t), t = 0..N, under a random ranking (mixture over the queries)."""
    n = pq.n_candidates
    rs, counts = np.unique(pq.n_relevant[pq.valid], return_counts=True)
    cdf = np.zeros(n + 1)
    for r, c in zip(rs.tolist(), counts.tolist(), strict=True):
        cdf += c * (1.0 - _first_rank_survival(n, r))
    return cdf / max(1, counts.sum())


def summarize(pq: PerQuery, *, chance: bool = True) -> dict[str, Any]:
    """Mean of each per-query metric over the queries with relevant items (the metrics dict).

    Keys: ``R@K``, ``recall@K``, ``P@K``, ``F1@K``, ``nDCG@K`` for each K, ``MRR``, ``MedR``,
    ``MeanR``, ``mAP``, ``mAP@10``, counts ``n_queries`` (evaluated), ``n_candidates``,
    ``n_queries_without_relevant``, ``mean_relevant``, and ``chance`` (same metric keys, see
    :func:`chance_values`).
    """
    valid = pq.valid
    out: dict[str, Any] = {
        "n_queries": int(valid.sum()),
        "n_candidates": int(pq.n_candidates),
        "n_queries_without_relevant": int((~valid).sum()),
        "mean_relevant": float(pq.n_relevant[valid].mean()) if valid.any() else 0.0,
    }
    if not valid.any():
        raise InputError("no query has a relevant item; nothing to evaluate")

    def mean(x):
        return float(np.mean(x[valid]))

    for k in pq.ks:
        out[f"R@{k}"] = mean(pq.hit[k])
        out[f"recall@{k}"] = mean(pq.recall[k])
        out[f"P@{k}"] = mean(pq.precision[k])
        out[f"F1@{k}"] = mean(pq.values(f"F1@{k}"))
        out[f"nDCG@{k}"] = mean(pq.ndcg[k])
    ranks = pq.first_rank[valid].astype(np.float64)
    out["MRR"] = mean(pq.rr)
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = float(np.mean(ranks))
    out["mAP"] = mean(pq.ap)
    out["mAP@10"] = mean(pq.ap10)
    out["PR"] = {"recall": list(RECALL_LEVELS),
                 "precision": [float(v) for v in np.mean(pq.iprec[valid], axis=0)]}
    if chance:
        out["chance"] = chance_values(pq)
    return out


def retrieval_metrics(scores, relevant, ks=(1, 5, 10), *, chunk_size: int | None = None) -> dict[str, Any]:
    """Retrieval metrics of a score matrix against a relevance matrix (definitions in the module docstring).

    Args:
        scores: (Q, N) float array, higher = more similar (or :class:`ScoreRows`).
        relevant: (Q, N) boolean array, or integer grades (> 0 relevant, the gain of nDCG),
            or a scipy.sparse matrix of either.
        ks: cut-offs for ``R@K``, ``recall@K``, ``P@K``, ``F1@K``, ``nDCG@K``.
        chunk_size: query rows per chunk (bounded memory); the result does not depend on it.

    Returns:
        A dict of floats (keys in :func:`summarize`), plus ``PR`` (mean interpolated
        precision at 11 recall levels) and ``chance`` (the same metrics under a random ranking).
        Ties are broken by candidate index, ascending.

    Example:
        >>> m = retrieval_metrics(np.array([[0.9, 0.1], [0.3, 0.2]]), np.eye(2, dtype=bool), ks=(1,))
        >>> m["R@1"], m["MRR"], m["MedR"], m["chance"]["R@1"]
        (0.5, 0.75, 1.5, 0.5)
    """
    return summarize(per_query_metrics(scores, relevant, ks=ks, chunk_size=chunk_size))
