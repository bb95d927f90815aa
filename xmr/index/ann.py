"""FAISS building blocks: pick a factory string, train and fill an index, tune it for a recall.

All indexes are inner-product indexes over L2-normalised float32 vectors, so a score is a cosine
similarity. An index is named by its FAISS factory string (``Flat``, ``HNSW32``, ``IVF1024,Flat``,
``OPQ32,IVF4096,PQ32,RFlat``); its one speed/accuracy knob (``nprobe`` for IVF, ``efSearch`` for
HNSW, plus ``k_factor`` for a refine stage) is chosen by :func:`tune_search_params` as the cheapest
setting whose recall@k against exact search reaches a target, measured with queries the caller
supplies (cross-modal queries, never the index's own vectors: those would find themselves).

Example:
    >>> index = build_index(vectors, choose_factory(len(vectors), vectors.shape[1]))  # doctest: +SKIP
    >>> truth = exact_knn(vectors, queries, 10)[1]  # doctest: +SKIP
    >>> params, recall = tune_search_params(index, queries, truth, k=10, target_recall=0.95)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from xmr.errors import InputError

# Below this many vectors an exact scan is fast enough (a few ms per query on one core) and needs
# no training, so ``auto`` keeps it exact.
EXACT_LIMIT = 50_000
# From here on the raw float32 vectors are the memory problem, so ``auto`` compresses them.
COMPRESS_LIMIT = 4_000_000

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int | None) -> int | None:
    """Parse a memory size such as ``"512M"``, ``"2GB"``, ``"1.5g"`` or ``1000000`` into bytes."""
    if text is None or isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not match:
        raise InputError(f"cannot read the memory size {text!r}; use e.g. 512M or 2G")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32, C-contiguous, L2-normalised rows (zero rows stay zero)."""
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _nlist_for(n: int) -> int:
    # About 4*sqrt(n) lists (the FAISS guideline is 4..16*sqrt(n)), a power of two, and at least
    # 39 training points per list so k-means is not under-determined.
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    return int(max(1, min(nlist, n // 39, 65536)))


def _pq_m_for(dim: int, n: int, budget: int | None) -> int:
    """Largest PQ code size (bytes per vector) that divides ``dim`` and fits the budget."""
    for m in (64, 32, 16, 8, 4):
        if dim % m == 0 and (budget is None or n * (m + 8) * 1.2 <= budget):
            return m
    return 4 if dim % 4 == 0 else 1


def choose_factory(n: int, dim: int, *, memory_budget: int | str | None = None) -> str:
    """Pick a FAISS factory string from the collection size and an optional memory budget.

    Exact ``Flat`` below :data:`EXACT_LIMIT` vectors; IVF-Flat (about 4·√n lists) up to
    :data:`COMPRESS_LIMIT`; OPQ + IVF-PQ (with a flat refine stage when the raw vectors still fit
    the budget) for millions or when the float32 vectors (``n·dim·4`` bytes) exceed the budget.

    Args:
        n: number of vectors the index will hold.
        dim: their dimension.
        memory_budget: bytes (or a size string like ``"2G"``) the index may take in RAM.

    Example:
        >>> choose_factory(10_000, 256)
        'Flat'
        >>> choose_factory(1_000_000, 256)
        'IVF4096,Flat'
    """
    budget = parse_size(memory_budget)
    raw = n * dim * 4
    fits = budget is None or raw * 1.1 <= budget
    if n < EXACT_LIMIT and fits:
        return "Flat"
    nlist = _nlist_for(n)
    if n < COMPRESS_LIMIT and fits:
        return f"IVF{nlist},Flat"
    m = _pq_m_for(dim, n, budget)
    base = f"OPQ{m},IVF{nlist},PQ{m}" if dim % m == 0 and m >= 4 else f"IVF{nlist},PQ{m}"
    # Refining with the exact vectors recovers the recall PQ loses, if they fit in memory.
    return base + ",RFlat" if fits else base


def train_size_for(factory: str, n: int) -> int:
    """How many vectors to train on: ~64 per IVF list (k-means), at least 50k for PQ/OPQ codebooks,
    and up to 100k for any other trainable index (a scalar quantizer's value ranges need a real
    sample: trained on one vector, every code decodes to that vector)."""
    match = re.search(r"IVF(\d+)", factory)
    want = 64 * int(match.group(1)) if match else 0
    if "PQ" in factory:
        want = max(want, 50_000)
    return min(n, want) if want else min(n, 100_000)


def build_index(vectors: np.ndarray, factory: str, *, train_size: int | None = None, seed: int = 0):
    """Create an inner-product index from ``factory``, train it on a random sample, add ``vectors``.

    Vectors are added in order, so the FAISS label of row ``i`` is ``i``.

    Args:
        vectors: (N, D) float32 L2-normalised vectors.
        factory: a FAISS factory string (``Flat``, ``HNSW32``, ``IVF1024,Flat``, ``OPQ32,IVF4096,PQ32``...).
        train_size: sample size for training (default :func:`train_size_for`).
        seed: sample seed, so the same vectors give the same index.

    Example:
        >>> index = build_index(np.eye(4, dtype="float32"), "Flat")  # doctest: +SKIP
    """
    import faiss

    x = normalize(vectors)
    n, dim = x.shape
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        raise InputError(f"FAISS cannot build the factory string {factory!r}: {reason}") from err
    if not index.is_trained:
        size = train_size if train_size is not None else train_size_for(factory, n)
        size = max(1, min(n, size))
        rng = np.random.default_rng(seed)
        sample = x if size >= n else x[np.sort(rng.choice(n, size=size, replace=False))]
        _check_trainable(index, factory, len(sample))
        _limit_opq(index)
        index.train(sample)
    index.add(x)
    return index


def _limit_opq(index) -> None:
    """Train OPQ rotations for 20 iterations on at most 64k points (FAISS: 50): the recall gained
    by the last iterations is small and each one trains a full PQ."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                vt.niter = min(vt.niter, 20)
                vt.max_train_points = min(vt.max_train_points, 65536)


def _check_trainable(index, factory: str, n_train: int) -> None:
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    if n_train < ivf.nlist:
        raise InputError(
            f"factory {factory!r} needs at least {ivf.nlist} training vectors (one per IVF list), "
            f"got {n_train}; use fewer lists or --factory auto"
        )


def tunable_parameter(index) -> str | None:
    """The knob that trades speed for recall: ``nprobe`` (IVF), ``efSearch`` (HNSW) or None (exact)."""
    import faiss

    try:
        faiss.extract_index_ivf(index)
        return "nprobe"
    except RuntimeError:
        pass
    inner = _unwrap(index)
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch"
    return None


def _unwrap(index):
    """Strip IndexPreTransform / IndexRefine / IndexIDMap wrappers down to the searching index."""
    import faiss

    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        elif isinstance(index, faiss.IndexRefine):
            index = faiss.downcast_index(index.base_index)
        elif isinstance(index, faiss.IndexIDMap):
            index = faiss.downcast_index(index.index)
        else:
            return index


def has_refine(index) -> bool:
    """Whether the index re-ranks candidates with exact vectors (``...,RFlat``)."""
    import faiss

    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform | faiss.IndexIDMap):
        index = faiss.downcast_index(index.index)
    return isinstance(index, faiss.IndexRefine)


def search_parameters(index, params: dict[str, Any] | None = None, selector=None):
    """Build a FAISS ``SearchParameters`` tree for ``index`` (no mutation of the shared index).

    Args:
        index: any index made by :func:`build_index`.
        params: ``{"nprobe": 32}``, ``{"efSearch": 64}``, ``{"k_factor": 4}`` (missing keys keep
            the index defaults).
        selector: an optional ``faiss.IDSelector`` restricting the labels that may be returned.

    Returns the parameters object, or None when there is nothing to set.
    """
    import faiss

    params = params or {}
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        inner = search_parameters(index.base_index, params, selector)
        out = faiss.IndexRefineSearchParameters()
        out.k_factor = float(params.get("k_factor", index.k_factor))
        if inner is not None:
            out.base_index_params = inner
            out._keep = inner  # SWIG does not own nested objects; keep them alive with the parent
        if selector is not None:
            out.sel = selector
        return out
    if isinstance(index, faiss.IndexPreTransform | faiss.IndexIDMap):
        # Both pass the parameters through to the wrapped index (IDMap maps the selector's ids).
        if isinstance(index, faiss.IndexIDMap):
            out = faiss.SearchParameters()
            if selector is not None:
                out.sel = selector
            return out
        inner = search_parameters(index.index, params, selector)
        if inner is None:
            return None
        out = faiss.SearchParametersPreTransform()
        out.index_params = inner
        out._keep = inner
        return out
    if isinstance(index, faiss.IndexIVF):
        out = faiss.SearchParametersIVF()
        out.nprobe = int(params.get("nprobe", index.nprobe))
    elif isinstance(index, faiss.IndexHNSW):
        out = faiss.SearchParametersHNSW()
        out.efSearch = int(params.get("efSearch", index.hnsw.efSearch))
    else:
        if selector is None:
            return None
        out = faiss.SearchParameters()
    if selector is not None:
        out.sel = selector
        out._keep_sel = selector
    return out


def search_index(index, queries: np.ndarray, k: int, params: dict[str, Any] | None = None, selector=None):
    """Search ``index`` with explicit parameters; returns (scores (Q, k), labels (Q, k), -1 = none)."""
    x = normalize(queries)
    k = int(max(1, k))
    sp = search_parameters(index, params, selector)
    if sp is None:
        return index.search(x, k)
    return index.search(x, k, params=sp)


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN by brute force (FAISS ``knn``): (scores (Q, k), labels (Q, k))."""
    import faiss

    xb = normalize(vectors)
    xq = normalize(queries)
    k = min(int(k), len(xb))
    scores, labels = faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
    return scores, labels


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / k (the recall@k of ANN vs exact search)."""
    found = np.asarray(found)[:, :k]
    truth = np.asarray(truth)[:, :k]
    hits = 0
    for f, t in zip(found, truth, strict=True):
        valid_t = t[t >= 0]
        if len(valid_t):
            hits += len(np.intersect1d(f[f >= 0], valid_t)) / len(valid_t)
        else:
            hits += 1.0
    return float(hits / max(len(found), 1))


def _candidates(index, name: str | None) -> list[int]:
    import faiss

    if name == "nprobe":
        nlist = faiss.extract_index_ivf(index).nlist
        values = [2**i for i in range(0, 17) if 2**i < nlist] + [nlist]
        return sorted(set(values))
    if name == "efSearch":
        return [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048]
    return []


def tune_search_params(
    index,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    target_recall: float = 0.95,
    k_factor: float | None = None,
) -> tuple[dict[str, Any], float]:
    """Find the cheapest ``nprobe``/``efSearch`` whose recall@k vs exact search reaches the target.

    Candidates are tried from cheapest up (powers of two for ``nprobe``, a ladder for
    ``efSearch``); the first one at or above ``target_recall`` wins, or the most accurate one
    tried when none gets there. An index with a refine stage also sets ``k_factor`` (re-rank
    ``k_factor·k`` PQ candidates with the exact vectors).

    Args:
        index: the index to tune.
        queries: (Q, D) tuning queries, from another modality (or held-out, shifted ones).
        truth: (Q, >=k) exact neighbour labels of those queries.
        k: the cut-off of the recall.
        target_recall: the recall@k to reach, e.g. 0.95.
        k_factor: refine multiplier for ``RFlat`` indexes (default: the first of 4, 8, ..., 64 that
            reaches the target).

    Returns ``(params, measured_recall)``.

    Example:
        >>> params, recall = tune_search_params(index, q, truth, k=10)  # doctest: +SKIP
        >>> params
        {'nprobe': 16}
    """
    k = min(int(k), truth.shape[1])
    name = tunable_parameter(index)
    # A refine stage re-ranks k_factor*k candidates exactly; more candidates lift the recall that
    # PQ's approximate distances lose, so try a few factors before giving up on the target.
    factors: list[float | None] = [None]
    if has_refine(index):
        factors = [float(k_factor)] if k_factor is not None else [4.0, 8.0, 16.0, 32.0, 64.0]
    best: tuple[dict[str, Any], float] = ({}, -1.0)
    for factor in factors:
        base: dict[str, Any] = {} if factor is None else {"k_factor": factor}
        if name is None:
            _, found = search_index(index, queries, k, base)
            recall = recall_at_k(found, truth, k)
            if recall > best[1]:
                best = (base, recall)
            if recall >= target_recall:
                return base, recall
            continue
        for value in _candidates(index, name):
            params = {**base, name: value}
            _, found = search_index(index, queries, k, params)
            recall = recall_at_k(found, truth, k)
            if recall > best[1] + 1e-9:
                best = (params, recall)
            if recall >= target_recall:
                return params, recall
    return best


def index_memory_bytes(index) -> int:
    """Size of the serialised index (what it takes in RAM once loaded, to within a few %)."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def shifted_queries(vectors: np.ndarray, count: int = 500, *, seed: int = 0) -> np.ndarray:
    """Held-out-style tuning queries for an index with no other modality to query it with.

    Random rows moved off the data manifold (isotropic noise of norm ~0.5 plus one fixed offset
    of norm 0.3, like a modality gap), so that they do not find themselves at rank 1.
    """
    rng = np.random.default_rng(seed)
    x = normalize(vectors)
    pick = x[rng.choice(len(x), size=min(count, len(x)), replace=False)]
    dim = x.shape[1]
    gap = rng.standard_normal(dim).astype(np.float32)
    gap *= 0.3 / np.linalg.norm(gap)
    noise = rng.standard_normal(pick.shape).astype(np.float32) * (0.5 / np.sqrt(dim))
    return normalize(pick + noise + gap)
