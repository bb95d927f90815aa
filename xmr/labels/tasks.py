"""Tasks of the label store (a pooled result to grade, as annotation tools call it): what an
annotator is given next, reservations with leases, and progress; each method is one transaction
over the functions of :mod:`xmr.labels.pooling`.

:class:`TaskStore` is a base of :class:`xmr.labels.store.LabelStore`, the store's one front door.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import xmr.labels.pooling as pooling
from xmr.errors import InputError
from xmr.labels.db import Database
from xmr.labels.schema import PoolItem, Progress, make_docno


class TaskStore(Database):
    """Pools, next items, reservations and progress over a :class:`~xmr.labels.db.Database`."""

    lease_s: float

    def list_pools(self) -> list[dict[str, Any]]:
        """The pools: name, depth, overlap, strategy, runs, number of queries."""
        return self._read(pooling.list_pools)

    def next_items(
        self, annotator: str, n: int = 10, *, pool: str | None = None, query: int | str | None = None
    ) -> list[PoolItem]:
        """The next ``n`` pooled results for this annotator to grade, best first.

        Items this annotator has graded are never returned, nor items whose grades and other
        annotators' live reservations already reach ``overlap``. Items the annotator holds come
        first, then the queries they have started (to finish them); fresh queries follow least
        busy first, so that annotators working at once spread over different queries. Within a
        query the pool's strategy orders the items. Nothing is reserved: :meth:`reserve_next` does.

        Example:
            >>> for item in store.next_items("ada", 5):
            ...     print(item.qid, item.docno, item.best_rank)
        """
        annotator = str(annotator).strip()
        if not annotator:
            raise InputError("annotator name is empty")
        pools = self._read(lambda conn: pooling.query_pools(conn, pool, query=query))
        return pooling.next_items(pools, annotator, n)

    def reserve_next(
        self,
        annotator: str,
        n: int = 1,
        *,
        pool: str | None = None,
        query: int | str | None = None,
        lease_s: float | None = None,
    ) -> list[PoolItem]:
        """The next ``n`` results for this annotator, each reserved for them for a lease.

        As :meth:`next_items`, in one write transaction: results the annotator already holds come
        first (their lease renewed), so asking again after a page reload gives back the same result;
        other annotators are not given a reserved result while its lease runs, unless the pool's
        overlap leaves room for them too; grading it ends the reservation, and an expired one
        returns the result to the pool.

        Args:
            annotator: who is grading.
            n: how many results to reserve.
            pool, query: only this pool or this query.
            lease_s: the lease in seconds (default the store's ``lease_s``).

        Example:
            >>> [item] = store.reserve_next("ada")
            >>> store.record_judgement(query=item.query_id, item_id=item.item_id,
            ...                        item_modality=item.item_modality, grade=2, annotator="ada")
        """
        annotator = str(annotator).strip()
        if not annotator:
            raise InputError("annotator name is empty")
        lease = self.lease_s if lease_s is None else float(lease_s)
        if not lease > 0:
            raise InputError(f"lease_s must be positive, not {lease_s!r}")
        return self._write(lambda conn: pooling.reserve_next(conn, annotator, int(n), lease_s=lease,
                                                             pool=pool, query=query))

    def release(self, annotator: str) -> int:
        """Give back every reservation of this annotator (they stop working); returns how many."""
        name = str(annotator).strip()
        return self._write(lambda conn: conn.execute(
            "DELETE FROM reservations WHERE annotator_id IN (SELECT id FROM annotators WHERE name = ?)",
            (name,)).rowcount)

    def reservations(self, *, live_only: bool = True) -> list[dict[str, Any]]:
        """The reservations (live ones only, by default): qid, docno, annotator, pool, times."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = ("SELECT q.qid, r.item_modality, r.item_id, a.name, r.pool, r.reserved_at, r.expires_at "
                   "FROM reservations r JOIN queries q ON q.id = r.query_id "
                   "JOIN annotators a ON a.id = r.annotator_id")
            params: tuple = ()
            if live_only:
                sql, params = sql + " WHERE r.expires_at > ?", (time.time(),)
            return [{"qid": r[0], "docno": make_docno(r[1], r[2]), "annotator": r[3], "pool": r[4],
                     "reserved_at": r[5], "expires_at": r[6]}
                    for r in conn.execute(sql + " ORDER BY r.reserved_at", params)]

        return self._read(run)

    def open_items(self, *, pool: str | None = None) -> list[list[PoolItem]]:
        """Per (pool, query), the results still open to an annotator who has not started, in judging
        order (what the next annotators will be given first: to render ahead, for instance)."""
        pools = self._read(lambda conn: pooling.query_pools(conn, pool))
        return [p.open_for("") for p in pools]  # "" is nobody: annotator names are never empty

    def pool_items(self, *, query: int | str, pool: str | None = None) -> list[PoolItem]:
        """All pooled results of one query (graded or not), in judging order, for a results view.

        Pair it with :meth:`current_grades` to show an annotator's grades next to each result.
        """
        pools = self._read(lambda conn: pooling.query_pools(conn, pool, query=query))
        return [item for p in pools for item in p.items()]

    def progress(self, *, pool: str | None = None, annotator: str | None = None) -> Progress:
        """Progress per annotator (graded, queries touched, pooled items left for them) and per query;
        with ``annotator``, that annotator's row only (what a progress line shows, at a team's pace)."""
        return self._read(lambda conn: pooling.progress_of(conn, pool, annotator=annotator))
