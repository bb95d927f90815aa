"""Pooling: which results to judge, and in which order.

**Depth-k pooling** (the TREC practice): the pool of a query is the union of the top ``k``
results of several runs (checkpoints, index types, fusion weights) for that query; results outside
every run's top ``k`` are left unjudged (and counted as such by ``judged@10``).

**Judging order.** Annotators rarely finish a pool, so the order should find relevant results
early. Three strategies, all replayed from the grades already in the store so that the order is a
pure function of (runs, grades) and needs no extra state:

- ``"mtf"`` — *move-to-front* (Cormack, Palmer & Clarke, "Efficient construction of large test
  collections", SIGIR 1998): every run has a priority; judging takes the next unjudged result of the
  run with the highest priority and stays on that run while its results are relevant; a
  non-relevant result lowers the run's priority by one, which moves it behind the others.
- ``"thompson"`` — the runs as arms of a multi-armed bandit with Thompson sampling (Losada,
  Parapar & Barreiro, "Feeling lucky? Multi-armed bandits for ordering judgements in pooling-based
  evaluation", SAC 2016): run ``s`` has a Beta(1 + relevant_s, 1 + non-relevant_s) posterior over
  the chance that its next result is relevant; each step samples every run's posterior and takes
  the next result of the run with the largest sample. A fixed seed per query keeps the order stable
  between calls.
- ``"rank"`` — the baseline: by best rank over the runs, then by how many runs retrieved it.

A result already reached through another run is skipped without touching any priority (as in
MTF). While replaying, a result that has no grade yet is taken as relevant: judging ahead of the
grades follows the run that is currently doing well, which is what MTF would do next.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from xmr.errors import InputError

STRATEGIES = ("mtf", "thompson", "rank")

# A run: {qid: [(docno, score), ...]} or pytrec_eval's {qid: {docno: score}}.
Run = Mapping[str, Sequence[tuple[str, float]] | Mapping[str, float]]


def run_pairs(docs: Sequence[tuple[str, float]] | Mapping[str, float]) -> list[tuple[str, float]]:
    """One query's results as ``[(docno, score)]`` whichever of the two run shapes it comes in."""
    pairs = docs.items() if isinstance(docs, Mapping) else docs
    return [(str(d), float(s)) for d, s in pairs]


def read_trec_run(path: str | os.PathLike) -> dict[str, list[tuple[str, float]]]:
    """Read a TREC run file (``qid Q0 docno rank score tag`` per line) into ``{qid: [(docno, score)]}``.

    Each query's list is ordered as trec_eval orders it: score descending, then docno descending.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"run file {path} does not exist")
    out: dict[str, list[tuple[str, float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(f"{path}:{number}: a run line has 6 fields 'qid Q0 docno rank score tag'")
            try:
                score = float(parts[4])
            except ValueError:
                raise InputError(f"{path}:{number}: score {parts[4]!r} is not a number") from None
            out.setdefault(parts[0], []).append((parts[2], score))
    return {qid: sort_run_list(docs) for qid, docs in out.items()}


def sort_run_list(docs: Sequence[tuple[str, float]] | Mapping[str, float]) -> list[tuple[str, float]]:
    """Order ``[(docno, score)]`` as trec_eval does: score descending, ties by docno descending."""
    return sorted(run_pairs(docs), key=lambda d: (d[1], d[0]), reverse=True)


def write_trec_run(run: Run, path: str | os.PathLike, *, tag: str = "xmr") -> Path:
    """Write a run as a TREC run file (ranks from 1 in trec_eval's order, scores exact to the bit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for qid in sorted(run):
            for rank, (docno, score) in enumerate(sort_run_list(run[qid]), start=1):
                fh.write(f"{qid} Q0 {docno} {rank} {score:.17g} {tag}\n")
    return path


def depth_pool(runs: Mapping[str, Run], *, depth: int) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Depth-k pooling: ``{qid: {run_name: top-depth [(docno, score)]}}`` over all runs' queries.

    Each run's list is taken in trec_eval's order (:func:`sort_run_list`) with repeated docnos
    dropped; the pool of a query is the union of its lists.

    Example:
        >>> depth_pool({"a": {"q1": [("audio:x", 0.9), ("audio:y", 0.5)]}}, depth=1)
        {'q1': {'a': [('audio:x', 0.9)]}}
    """
    from xmr.labels.store import parse_docno

    if depth < 1:
        raise InputError("pool depth must be at least 1")
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for run_name, run in runs.items():
        for qid, docs in run.items():
            seen: set[str] = set()
            top: list[tuple[str, float]] = []
            for docno, score in sort_run_list(docs):
                if docno in seen:
                    continue
                parse_docno(docno)
                seen.add(docno)
                top.append((docno, score))
                if len(top) == depth:
                    break
            out.setdefault(str(qid), {})[run_name] = top
    return out


def judging_order(
    lists: Sequence[Sequence[str]],
    relevance: Mapping[str, bool | None],
    *,
    strategy: str = "mtf",
    seed: int = 0,
) -> list[str]:
    """The order in which to judge one query's pool (every pooled docno exactly once).

    Args:
        lists: each run's pooled docnos, best first (run order breaks ties between runs).
        relevance: what is known: True / False for judged results, None (or absent) for the rest.
        strategy: ``"mtf"``, ``"thompson"`` or ``"rank"`` (see the module docstring).
        seed: the random seed of ``"thompson"`` (the store passes the query id).

    Example:
        >>> judging_order([["a:1", "a:2"], ["a:3", "a:1"]], {"a:1": False}, strategy="mtf")
        ['a:1', 'a:3', 'a:2']
    """
    if strategy not in STRATEGIES:
        raise InputError(f"pooling strategy must be one of {STRATEGIES}, not {strategy!r}")
    if strategy == "rank":
        best_rank: dict[str, int] = {}
        hits: dict[str, int] = {}
        first_run: dict[str, int] = {}
        for run_index, lst in enumerate(lists):
            for rank, docno in enumerate(lst):
                best_rank[docno] = min(rank, best_rank.get(docno, rank))
                hits[docno] = hits.get(docno, 0) + 1
                first_run.setdefault(docno, run_index)
        best = {d: (best_rank[d], -hits[d], first_run[d]) for d in best_rank}
        return sorted(best, key=lambda d: best[d])

    cursors = [0] * len(lists)
    visited: set[str] = set()
    order: list[str] = []
    priority = [0] * len(lists)
    rel_counts = [[0, 0] for _ in lists]  # [relevant, non-relevant] per run
    rng = random.Random(seed)
    current: int | None = None

    def advance(run: int) -> str | None:
        lst = lists[run]
        while cursors[run] < len(lst) and lst[cursors[run]] in visited:
            cursors[run] += 1  # reached already through another run: skipped, no update
        return lst[cursors[run]] if cursors[run] < len(lst) else None

    while True:
        live = [r for r in range(len(lists)) if advance(r) is not None]
        if not live:
            return order
        if strategy == "mtf":
            if current not in live:
                top = max(priority[r] for r in live)
                current = min(r for r in live if priority[r] == top)
            run = current
        else:
            samples = [(rng.betavariate(1 + rel_counts[r][0], 1 + rel_counts[r][1]), -r) for r in live]
            run = -max(samples)[1]
        docno = advance(run)
        assert docno is not None
        visited.add(docno)
        order.append(docno)
        rel = relevance.get(docno)
        if rel is False:
            rel_counts[run][1] += 1
            if strategy == "mtf":
                priority[run] -= 1
                current = None
        elif rel is True:
            rel_counts[run][0] += 1
        # rel is None: not graded yet; taken as relevant for MTF (stay on this run), no update for bandits.
