"""Pooling: which results to judge, and in which order; pools, next items and progress in the store.

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

**Task distribution** (as Label Studio and Argilla do it): a result shown to an annotator is
*reserved* for them for a lease (a row of ``reservations``). A reservation counts towards the
pool's overlap like a grade, so other annotators are given other results; grading the result ends
the reservation, and an expired lease counts no more, so the result returns to the pool. An
annotator's own pending reservations come first, so asking again (a page reload) gives back the
same result. Annotators who start a fresh query are spread by load: the query with the fewest
annotators holding reservations in it comes first.

**In the store.** :func:`create_pool` writes a pool, :func:`query_pools` reads each (pool, query)
as a :class:`QueryPool` in one snapshot (grades and live reservations), :func:`next_items` /
:func:`progress_of` are pure functions of those snapshots and :func:`reserve_next` takes the next
items with their leases inside one write transaction. Which of a query's items an annotator may
take is decided in one place, :meth:`QueryPool.wants`. :class:`xmr.labels.store.LabelStore` runs
these inside its transactions (``add_pool``, ``next_items``, ``reserve_next``, ``pool_items``,
``progress``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from xmr.errors import InputError
from xmr.labels.schema import (
    AnnotatorProgress,
    PoolItem,
    Progress,
    QueryProgress,
    annotator_row_id,
    make_docno,
    parse_docno,
    query_row_id,
    utc_now,
)

STRATEGIES = ("mtf", "thompson", "rank")

# A run: {qid: [(docno, score), ...]} or pytrec_eval's {qid: {docno: score}}.
Runlike = Mapping[str, Sequence[tuple[str, float]] | Mapping[str, float]]


# ----------------------------------------------------------------- which results, in which order


def depth_pool(runs: Mapping[str, Runlike], *, depth: int) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Depth-k pooling: ``{qid: {run_name: top-depth [(docno, score)]}}`` over all runs' queries.

    Each run's list is taken in trec_eval's order (:func:`xmr.eval.trec.ranked`) with repeated
    docnos dropped; the pool of a query is the union of its lists.

    Example:
        >>> depth_pool({"a": {"q1": [("audio:x", 0.9), ("audio:y", 0.5)]}}, depth=1)
        {'q1': {'a': [('audio:x', 0.9)]}}
    """
    from xmr.eval.trec import ranked

    if depth < 1:
        raise InputError("pool depth must be at least 1")
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for run_name, run in runs.items():
        for qid, docs in run.items():
            seen: set[str] = set()
            top: list[tuple[str, float]] = []
            for docno, score in ranked(docs):
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


# ----------------------------------------------------------------- pools in the store


@dataclasses.dataclass
class QueryPool:
    """One query of one pool, read in one snapshot: each run's pooled docnos and their current grades.

    ``lists[i]`` holds run ``run_names[i]``'s pooled docnos, best first; ``grades`` maps every
    pooled docno to ``{annotator: grade}`` (empty while ungraded); ``reserved`` maps a docno to the
    annotators holding a live lease on it (absent when nobody does).
    """

    pool: str
    overlap: int
    strategy: str
    query_id: int
    qid: str
    run_names: list[str]
    lists: list[list[str]]
    grades: dict[str, dict[str, int]]
    reserved: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    def items(self) -> list[PoolItem]:
        """Every pooled result in the pool's judging order."""
        # A result counts as relevant when its annotators' mean grade is at least 1.
        relevance = {d: (sum(g.values()) / len(g) >= 1) if g else None for d, g in self.grades.items()}
        out = []
        for docno in judging_order(self.lists, relevance, strategy=self.strategy, seed=self.query_id):
            ranks = [(lst.index(docno) + 1, self.run_names[i]) for i, lst in enumerate(self.lists)
                     if docno in lst]
            modality, item_id = parse_docno(docno)
            out.append(PoolItem(
                pool=self.pool, query_id=self.query_id, qid=self.qid, item_modality=modality,
                item_id=item_id, best_rank=min(r for r, _ in ranks), runs=tuple(rn for _, rn in ranks),
                n_annotators=len(self.grades[docno]),
            ))
        return out

    def wants(self, docno: str, annotator: str) -> bool:
        """Whether ``annotator`` may grade ``docno`` now: not graded by them, and either reserved for
        them or with fewer than ``overlap`` grades and other annotators' reservations together."""
        graded = self.grades[docno]
        if annotator in graded:
            return False
        held = self.reserved.get(docno, ())
        return annotator in held or len(graded) + len(held) < self.overlap

    def held_by(self, annotator: str) -> list[str]:
        """The docnos ``annotator`` holds a live reservation on and has not graded yet."""
        return [d for d, who in self.reserved.items() if annotator in who and annotator not in self.grades[d]]

    def holders(self) -> set[str]:
        """The annotators holding a live reservation in this query."""
        return {a for who in self.reserved.values() for a in who}

    def open_for(self, annotator: str) -> list[PoolItem]:
        """The items ``annotator`` may grade, in judging order."""
        return [item for item in self.items() if self.wants(item.docno, annotator)]

    def started_by(self, annotator: str) -> bool:
        return any(annotator in g for g in self.grades.values())


def prepare_pool(
    runs: Mapping[str, Runlike | str | os.PathLike], *, depth: int, overlap: int, strategy: str
) -> tuple[list[str], dict[str, dict[str, list[tuple[str, float]]]]]:
    """Check a pool's settings, read its TREC run files and pool them: ``(run names, depth_pool(...))``."""
    from xmr.eval.trec import read_run

    if strategy not in STRATEGIES:
        raise InputError(f"pooling strategy must be one of {STRATEGIES}, not {strategy!r}")
    if int(depth) < 1 or int(overlap) < 1:
        raise InputError("pool depth and overlap must be at least 1")
    if not runs:
        raise InputError("a pool needs at least one run")
    loaded = {str(rn): (read_run(r) if isinstance(r, (str, os.PathLike)) else r) for rn, r in runs.items()}
    return list(loaded), depth_pool(loaded, depth=int(depth))  # validates docnos


def create_pool(
    conn: sqlite3.Connection,
    name: str,
    *,
    run_names: Sequence[str],
    per_query: Mapping[str, Mapping[str, Sequence[tuple[str, float]]]],
    depth: int,
    overlap: int,
    strategy: str,
) -> int:
    """Write a pool made by :func:`prepare_pool` (``run_names`` in the caller's order); returns its id."""
    if conn.execute("SELECT 1 FROM pools WHERE name = ?", (str(name),)).fetchone():
        raise InputError(f"a pool named {name!r} already exists")
    pool_id = conn.execute(
        "INSERT INTO pools(name, depth, overlap, strategy, created_at) VALUES (?, ?, ?, ?, ?)",
        (str(name), int(depth), int(overlap), strategy, utc_now()),
    ).lastrowid
    for index, rn in enumerate(run_names):
        conn.execute("INSERT INTO pool_runs VALUES (?, ?, ?)", (pool_id, index, rn))
    for qid, lists in per_query.items():
        query_id = query_row_id(conn, qid)
        for index, rn in enumerate(run_names):
            for rank, (docno, score) in enumerate(lists.get(rn, []), start=1):
                modality, item_id = parse_docno(docno)
                conn.execute(
                    "INSERT INTO pool_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (pool_id, query_id, index, rank, modality, item_id, score),
                )
    return pool_id


def _run_names(conn: sqlite3.Connection, pool_id: int) -> list[str]:
    sql = "SELECT name FROM pool_runs WHERE pool_id = ? ORDER BY run_index"
    return [r[0] for r in conn.execute(sql, (pool_id,))]


def list_pools(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The pools: name, depth, overlap, strategy, runs, number of queries."""
    out = []
    for p in conn.execute("SELECT * FROM pools ORDER BY id").fetchall():
        nq = conn.execute(
            "SELECT COUNT(DISTINCT query_id) FROM pool_entries WHERE pool_id = ?", (p["id"],)
        ).fetchone()[0]
        out.append({"name": p["name"], "depth": p["depth"], "overlap": p["overlap"],
                    "strategy": p["strategy"], "runs": _run_names(conn, p["id"]), "queries": nq})
    return out


def query_pools(
    conn: sqlite3.Connection, pool: str | None = None, *, query: int | str | None = None,
    now: float | None = None,
) -> list[QueryPool]:
    """Every (pool, query) of one pool (or all), optionally of one query, with its current grades
    and the reservations live at ``now`` (Unix seconds, default the present)."""
    only = query_row_id(conn, query) if query is not None else None
    now = time.time() if now is None else float(now)
    sql, params = "SELECT * FROM pools", ()
    if pool is not None:
        sql, params = sql + " WHERE name = ?", (str(pool),)
    pools = conn.execute(sql + " ORDER BY id", params).fetchall()
    if pool is not None and not pools:
        raise InputError(f"no pool {pool!r} in the label store")
    grades: dict[tuple[int, str], dict[str, int]] = {}
    marks = ", ".join("?" * len(pools))
    for r in conn.execute(
        "SELECT j.query_id, j.item_modality, j.item_id, a.name, j.grade FROM judgements j "
        "JOIN annotators a ON a.id = j.annotator_id WHERE j.state = 'current' AND j.query_id IN "
        f"(SELECT DISTINCT query_id FROM pool_entries WHERE pool_id IN ({marks}))",
        [p["id"] for p in pools],
    ):
        grades.setdefault((r[0], make_docno(r[1], r[2])), {})[r[3]] = r[4]
    reserved: dict[tuple[int, str], set[str]] = {}
    for r in conn.execute(
        "SELECT r.query_id, r.item_modality, r.item_id, a.name FROM reservations r "
        "JOIN annotators a ON a.id = r.annotator_id WHERE r.expires_at > ?", (now,)
    ):
        reserved.setdefault((r[0], make_docno(r[1], r[2])), set()).add(r[3])
    out = []
    for p in pools:
        run_names = _run_names(conn, p["id"])
        entries: dict[int, list[list[str]]] = {}
        qids: dict[int, str] = {}
        for r in conn.execute(
            "SELECT e.query_id, q.qid, e.run_index, e.item_modality, e.item_id FROM pool_entries e "
            "JOIN queries q ON q.id = e.query_id WHERE e.pool_id = ? "
            "ORDER BY e.query_id, e.run_index, e.rank",
            (p["id"],),
        ):
            entries.setdefault(r[0], [[] for _ in run_names])[r[2]].append(make_docno(r[3], r[4]))
            qids[r[0]] = r[1]
        for query_id, lists in entries.items():
            if only is not None and query_id != only:
                continue
            docs = {d for lst in lists for d in lst}
            out.append(QueryPool(
                pool=p["name"], overlap=p["overlap"], strategy=p["strategy"], query_id=query_id,
                qid=qids[query_id], run_names=run_names, lists=lists,
                grades={d: grades.get((query_id, d), {}) for d in docs},
                reserved={d: reserved[(query_id, d)] for d in docs if (query_id, d) in reserved},
            ))
    return out


def next_items(pools: Sequence[QueryPool], annotator: str, n: int) -> list[PoolItem]:
    """The next ``n`` items for ``annotator`` (see :meth:`xmr.labels.store.LabelStore.next_items`).

    First the items the annotator holds a reservation on (oldest pool first), then the rest of the
    queries they started, then fresh queries, least busy first: by the number of other annotators
    holding reservations in them, then by how few of their items are still open to anyone, then
    in pool order. Annotators arriving together thus spread over different queries.
    """
    out: list[PoolItem] = []
    seen: set[tuple[str, int, str]] = set()

    def take(items: Sequence[PoolItem]) -> None:
        for item in items:
            key = (item.pool, item.query_id, item.docno)
            if len(out) < n and key not in seen:
                seen.add(key)
                out.append(item)

    for p in pools:
        held = set(p.held_by(annotator))
        if held:
            take([item for item in p.items() if item.docno in held])
    started = [p for p in pools if p.started_by(annotator) or p.held_by(annotator)]
    fresh = [p for p in pools if not (p.started_by(annotator) or p.held_by(annotator))]
    busy = {id(p): (len(p.holders() - {annotator}),
                    -sum(len(g) + len(p.reserved.get(d, ())) < p.overlap for d, g in p.grades.items()))
            for p in fresh}
    fresh = sorted(fresh, key=lambda p: busy[id(p)])  # stable: pool order breaks ties
    for p in started + fresh:
        if len(out) >= n:
            break
        take(p.open_for(annotator))
    return out


def reserve_next(
    conn: sqlite3.Connection,
    annotator: str,
    n: int,
    *,
    lease_s: float,
    pool: str | None = None,
    query: int | str | None = None,
    now: float | None = None,
) -> list[PoolItem]:
    """Inside a write transaction: drop expired leases, take the annotator's next ``n`` items
    (:func:`next_items`) and reserve each for ``lease_s`` seconds from ``now`` (a pending
    reservation's lease is renewed)."""
    now = time.time() if now is None else float(now)
    conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
    items = next_items(query_pools(conn, pool, query=query, now=now), annotator, n)
    if items:
        aid = annotator_row_id(conn, annotator)
        conn.executemany(
            "INSERT INTO reservations(query_id, item_modality, item_id, annotator_id, pool, reserved_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(query_id, item_modality, item_id, "
            "annotator_id) DO UPDATE SET expires_at = excluded.expires_at",
            [(it.query_id, it.item_modality, it.item_id, aid, it.pool, now, now + lease_s) for it in items],
        )
    return items


def progress_of(
    conn: sqlite3.Connection, pool: str | None = None, *, annotator: str | None = None
) -> Progress:
    """Progress per annotator (graded, queries touched, pooled items left for them) and per query
    (with ``annotator``: only that annotator's row)."""
    pools = query_pools(conn, pool)
    only, params = ("WHERE a.name = ? ", (str(annotator).strip(),)) if annotator is not None else ("", ())
    per_ann = conn.execute(
        "SELECT a.name, COUNT(j.id), COUNT(DISTINCT j.query_id) FROM annotators a LEFT JOIN "
        f"judgements j ON j.annotator_id = a.id AND j.state = 'current' {only}GROUP BY a.id ORDER BY a.id",
        params,
    ).fetchall()
    annotators = [
        AnnotatorProgress(annotator=name, judged=judged, queries=nq,
                          remaining=sum(p.wants(d, name) for p in pools for d in p.grades))
        for name, judged, nq in per_ann
    ]
    queries = [
        QueryProgress(
            qid=p.qid, pool_size=len(p.grades), judged_items=sum(1 for g in p.grades.values() if g),
            complete_items=sum(1 for g in p.grades.values() if len(g) >= p.overlap),
            annotators=tuple(sorted({a for g in p.grades.values() for a in g})),
            reserved_items=sum(1 for d, who in p.reserved.items()
                               if len(p.grades[d]) < p.overlap and who - set(p.grades[d])),
        )
        for p in pools
    ]
    return Progress(annotators=annotators, queries=queries)
