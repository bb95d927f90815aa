"""The relevance-judgement store: SQLite in WAL mode, safe under many annotators at once.

:class:`LabelStore` is the one front door: annotators, queries, judgements and their history,
evaluation sets, pools, backup. Beneath it, :mod:`xmr.labels.db` holds the connections and
transactions, :mod:`xmr.labels.schema` the tables and their rows, :mod:`xmr.labels.media` the
stored query media, :mod:`xmr.labels.pooling` the pools and the judging order, and
:mod:`xmr.labels.tasks` what an annotator is given next (reservations, progress).

Durability: ``synchronous=FULL`` makes SQLite fsync the write-ahead log at every commit: once
:meth:`LabelStore.record_judgement` returns, the grade survives a killed process and also a power
cut (``NORMAL`` would survive a killed process only, since WAL frames sit in the OS page cache
until a checkpoint; a judgement is a human click, so one fsync per click costs nothing a person
would notice).

Complete files: the store checkpoints its write-ahead log into the database file on a timer
(``checkpoint_every_s``) and when it is closed, so that after a normal stop ``labels.sqlite`` alone
holds every grade; :meth:`LabelStore.backup` writes a consistent copy while annotators keep working
(SQLite's online backup API).

Reservations: :meth:`LabelStore.reserve_next` gives an annotator the next results and reserves them
for ``lease_s`` seconds (see :mod:`xmr.labels.pooling`), so that annotators working at once are
given different results and a result is graded no more often than its pool's overlap asks.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import xmr.labels.pooling as pooling
from xmr.errors import InputError
from xmr.labels.media import query_payload
from xmr.labels.schema import (
    JUDGEMENT_SQL,
    MIGRATIONS,
    MODALITIES,
    QUERY_SQL,
    EvalSet,
    EventSink,
    Judgement,
    Query,
    UndoResult,
    aggregate_grades,
    annotator_row_id,
    check_judgement,
    judgement_from_row,
    make_docno,
    query_from_row,
    query_row_id,
    set_row_id,
    table_counts,
    utc_now,
)
from xmr.labels.tasks import TaskStore

DEFAULT_LEASE_S = 300.0  # five minutes: time to listen to a clip, read a score and decide


class LabelStore(TaskStore):
    """The judgement store over one SQLite file; safe to use from many threads and processes.

    Args:
        path: the database file (created with its folder if missing).
        synchronous: ``"FULL"`` (default, survives a power cut) or ``"NORMAL"`` (survives a killed
            process only).
        busy_timeout_ms: how long SQLite itself waits for a lock before the retry loop takes over.
        max_wait_s: the total time a write keeps retrying before :class:`StoreBusyError`.
        sync: what receives every event (query, grade, undo), e.g. a :class:`xmr.labels.hub.JsonlSync`;
            None or False: none. The store never reads the environment: whoever builds it from
            the environment passes ``sync=xmr.labels.hub.from_env()``.
        lease_s: how long a result given by :meth:`reserve_next` stays reserved for its annotator.
        checkpoint_every_s: how often a background thread checkpoints the WAL into the database
            file (None: only on :meth:`close`).

    Example:
        >>> store = LabelStore("labels/labels.sqlite")
        >>> q = store.add_query(modality="text", text="a chorale for organ", created_by="ada")
        >>> jid = store.record_judgement(query=q, item_modality="audio", item_id="bach-1",
        ...                              grade=3, annotator="ada")
        >>> store.current_grades(query=q, annotator="ada")
        {'audio:bach-1': 3}
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        max_wait_s: float = 120.0,
        sync: EventSink | None | bool = None,
        lease_s: float = DEFAULT_LEASE_S,
        checkpoint_every_s: float | None = 30.0,
    ) -> None:
        if not float(lease_s) > 0:
            raise InputError(f"lease_s must be positive, not {lease_s!r}")
        super().__init__(path, migrations=MIGRATIONS, synchronous=synchronous,
                         busy_timeout_ms=busy_timeout_ms, max_wait_s=max_wait_s,
                         checkpoint_every_s=checkpoint_every_s)
        self.media_dir = self.path.parent / f"{self.path.stem}_media"
        self.sync: EventSink | None = sync or None
        self.lease_s = float(lease_s)

    # ----------------------------------------------------------------- annotators and queries
    def add_annotator(self, name: str) -> int:
        """Register an annotator (idempotent); returns its id."""
        row = self._read(lambda conn: conn.execute(
            "SELECT id FROM annotators WHERE name = ?", (str(name or "").strip(),)).fetchone())
        return row[0] if row else self._write(lambda conn: annotator_row_id(conn, name))

    def annotators(self) -> list[str]:
        """The annotators' names, in order of arrival."""
        rows = self._conn().execute("SELECT name FROM annotators ORDER BY id").fetchall()
        return [r[0] for r in rows]

    def add_query(
        self,
        *,
        modality: str,
        text: str | None = None,
        media: Any = None,
        source_item_id: str | None = None,
        created_by: str | None = None,
        qid: str | None = None,
        dedupe: bool = True,
    ) -> int:
        """Add a query (text, or media stored as a copy in :attr:`media_dir`); returns its id.

        Args:
            modality: ``"audio"``, ``"image"`` or ``"text"``.
            text: the query text (text queries).
            media: an upload for audio/image queries: a path, bytes, a PIL image or array, or
                Gradio's ``(sample_rate, array)`` for audio.
            source_item_id: the corpus item the query came from (a result turned into a query).
            created_by: the annotator who made it.
            qid: the external id used in qrels and runs (default ``"q<id>"``).
            dedupe: return the existing query with the same modality, payload, source and qid.

        Example:
            >>> qid = store.add_query(modality="image", media="upload.png", created_by="ada")
        """
        if modality not in MODALITIES:
            raise InputError(f"query modality must be one of {MODALITIES}, not {modality!r}")
        text, stored_rel, sha = query_payload(self.media_dir, modality, text=text, media=media)
        if qid is not None:
            qid = str(qid).strip()
            if not qid or any(c.isspace() for c in qid):
                raise InputError(f"qid {qid!r} must be a non-empty word without spaces (it goes into qrels)")

        def run(conn: sqlite3.Connection) -> int:
            if dedupe:
                row = conn.execute(
                    "SELECT id, qid FROM queries WHERE modality = ? AND payload_sha256 = ? "
                    "AND source_item_id IS ? ORDER BY id",
                    (modality, sha, source_item_id),
                ).fetchall()
                for r in row:
                    if qid is None or r["qid"] == qid:
                        return r["id"]
            creator = annotator_row_id(conn, created_by) if created_by else None
            if qid is not None and conn.execute("SELECT 1 FROM queries WHERE qid = ?", (qid,)).fetchone():
                raise InputError(f"qid {qid!r} already names another query")
            placeholder = qid or f"pending-{os.getpid()}-{threading.get_ident()}-{time.time_ns()}"
            new_id = conn.execute(
                "INSERT INTO queries(qid, modality, text, media_path, payload_sha256, source_item_id, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (placeholder, modality, text, stored_rel, sha, source_item_id, creator, utc_now()),
            ).lastrowid
            if qid is None:
                name, n = f"q{new_id}", 0
                while conn.execute("SELECT 1 FROM queries WHERE qid = ?", (name,)).fetchone():
                    n += 1
                    name = f"q{new_id}-{n}"
                conn.execute("UPDATE queries SET qid = ? WHERE id = ?", (name, new_id))
            return new_id

        query_id = self._write(run)
        if self.sync is not None:
            self.sync.on_query(self.get_query(query_id))
        return query_id

    def add_query_row(self, row: Mapping[str, Any], *, created_by: str | None = None) -> int:
        """Add a query given as a row of a queries file or a sync log; returns its id.

        Args:
            row: ``{qid, modality, text | media, source_item_id, created_by}`` (``media`` a path;
                a row with media ignores its text).
            created_by: the author when the row names none.
        """
        media = row.get("media")
        return self.add_query(
            modality=row["modality"], text=None if media else row.get("text"), media=media,
            source_item_id=row.get("source_item_id"), created_by=row.get("created_by") or created_by,
            qid=str(row["qid"]),
        )

    def get_query(self, query: int | str) -> Query:
        """A query by id or qid."""

        def run(conn: sqlite3.Connection) -> Query:
            qid = query_row_id(conn, query)
            row = conn.execute(QUERY_SQL + " WHERE q.id = ?", (qid,)).fetchone()
            return query_from_row(row, self.media_dir)

        return self._read(run)

    def list_queries(self, *, eval_set: str | None = None) -> list[Query]:
        """All queries, or those of one evaluation set, in id order."""

        def run(conn: sqlite3.Connection) -> list[Query]:
            if eval_set is None:
                rows = conn.execute(QUERY_SQL + " ORDER BY q.id").fetchall()
            else:
                set_id = set_row_id(conn, eval_set)
                rows = conn.execute(
                    QUERY_SQL + " JOIN eval_set_queries s ON s.query_id = q.id WHERE s.set_id = ? "
                    "ORDER BY q.id",
                    (set_id,),
                ).fetchall()
            return [query_from_row(r, self.media_dir) for r in rows]

        return self._read(run)

    # ----------------------------------------------------------------- judgements

    def _get_judgement(self, conn: sqlite3.Connection, jid: int) -> Judgement:
        row = conn.execute(JUDGEMENT_SQL + " WHERE j.id = ?", (jid,)).fetchone()
        return judgement_from_row(row)

    def record_judgement(
        self,
        *,
        query: int | str,
        item_id: str,
        item_modality: str,
        grade: int,
        annotator: str,
        model_fingerprint: str | None = None,
        index_version: str | None = None,
        note: str | None = None,
        at: str | None = None,
    ) -> int:
        """Record a grade; it becomes the current one for (query, item, annotator). Returns its id.

        The previous current grade, if any, is kept in the history as ``replaced`` (see :meth:`undo`).
        The grade is on disk when this returns.

        Args:
            query: the query's id or qid.
            item_id: the result's item id; ``item_modality`` its modality.
            grade: 0 (not relevant) to 3 (highly relevant).
            annotator: the annotator's name (registered on first use).
            model_fingerprint, index_version: what produced the result list being graded.
            note: free text.
            at: the time (ISO 8601 UTC); default now (import keeps the original time).

        Example:
            >>> store.record_judgement(query="q1", item_id="bach-1", item_modality="audio", grade=2,
            ...                        annotator="ada")
        """
        return self.record_judgements([dict(
            query=query, item_id=item_id, item_modality=item_modality, grade=grade, annotator=annotator,
            model_fingerprint=model_fingerprint, index_version=index_version, note=note, at=at,
        )])[0]

    def record_judgements(self, records: Iterable[Mapping[str, Any]]) -> list[int]:
        """Record many grades in one transaction (import, replay); each as :meth:`record_judgement`.

        Args:
            records: mappings with the keyword arguments of :meth:`record_judgement`.

        All or nothing: a bad record raises InputError and none of them is kept.
        """
        clean = [check_judgement(r) for r in records]

        def run(conn: sqlite3.Connection) -> list[int]:
            ids = []
            for r in clean:
                qid = query_row_id(conn, r["query"])
                aid = annotator_row_id(conn, r.get("annotator"))
                old = conn.execute(
                    "SELECT id FROM judgements WHERE query_id = ? AND item_modality = ? AND item_id = ? "
                    "AND annotator_id = ? AND state = 'current'",
                    (qid, r["item_modality"], r["item_id"], aid),
                ).fetchone()
                previous = old[0] if old else None
                if previous is not None:
                    conn.execute("UPDATE judgements SET state = 'replaced' WHERE id = ?", (previous,))
                conn.execute(  # graded: the reservation, if any, has served its purpose
                    "DELETE FROM reservations WHERE query_id = ? AND item_modality = ? AND item_id = ? "
                    "AND annotator_id = ?", (qid, r["item_modality"], r["item_id"], aid))
                ids.append(conn.execute(
                    "INSERT INTO judgements(query_id, item_modality, item_id, annotator_id, grade, at, "
                    "model_fingerprint, index_version, note, previous_id, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'current')",
                    (qid, r["item_modality"], r["item_id"], aid, r["grade"], r["at"],
                     r.get("model_fingerprint"), r.get("index_version"), r.get("note"), previous),
                ).lastrowid)
            return ids

        ids = self._write(run)
        if self.sync is not None:
            for jid in ids:
                j = self.get_judgement(jid)
                self.sync.on_judgement(j, self.get_query(j.query_id), event="judge")
        return ids

    def get_judgement(self, judgement_id: int) -> Judgement:
        """One row of the history by id."""

        def run(conn: sqlite3.Connection) -> Judgement:
            row = conn.execute(JUDGEMENT_SQL + " WHERE j.id = ?", (int(judgement_id),)).fetchone()
            if row is None:
                raise InputError(f"no judgement {judgement_id}")
            return judgement_from_row(row)

        return self._read(run)

    def undo(self, *, annotator: str, query: int | str | None = None) -> UndoResult | None:
        """Withdraw the annotator's latest grade (optionally within one query).

        The grade it had replaced becomes current again; if there was none, the item is ungraded
        again. Calling it repeatedly walks back through the annotator's actions, newest first
        (the newest current row is always the newest action not yet undone). Returns None when
        there is nothing to undo.
        """

        def run(conn: sqlite3.Connection) -> UndoResult | None:
            name = str(annotator).strip()
            row = conn.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            sql = "SELECT id, previous_id FROM judgements WHERE annotator_id = ? AND state = 'current'"
            params: list[Any] = [row[0]]
            if query is not None:
                sql += " AND query_id = ?"
                params.append(query_row_id(conn, query))
            last = conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if last is None:
                return None
            conn.execute("UPDATE judgements SET state = 'undone' WHERE id = ?", (last["id"],))
            if last["previous_id"] is None:  # ungraded again: keep it for its annotator to regrade
                now = time.time()
                conn.execute(
                    "INSERT OR REPLACE INTO reservations(query_id, item_modality, item_id, annotator_id, "
                    "pool, reserved_at, expires_at) SELECT query_id, item_modality, item_id, annotator_id, "
                    "NULL, ?, ? FROM judgements WHERE id = ?", (now, now + self.lease_s, last["id"]))
            restored = None
            if last["previous_id"] is not None:
                conn.execute("UPDATE judgements SET state = 'current' WHERE id = ?", (last["previous_id"],))
                restored = self._get_judgement(conn, last["previous_id"])
            return UndoResult(undone=self._get_judgement(conn, last["id"]), restored=restored)

        result = self._write(run)
        if result is not None and self.sync is not None:
            self.sync.on_judgement(result.undone, self.get_query(result.undone.query_id), event="undo")
        return result

    def current_grades(self, *, query: int | str, annotator: str) -> dict[str, int]:
        """The annotator's current grades of a query's results, ``{docno: grade}``."""

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            qid = query_row_id(conn, query)
            rows = conn.execute(
                "SELECT j.item_modality, j.item_id, j.grade FROM judgements j JOIN annotators a "
                "ON a.id = j.annotator_id WHERE j.query_id = ? AND a.name = ? AND j.state = 'current' "
                "ORDER BY j.id",
                (qid, str(annotator).strip()),
            ).fetchall()
            return {make_docno(r[0], r[1]): r[2] for r in rows}

        return self._read(run)

    def judgements(
        self,
        *,
        eval_set: str | None = None,
        query: int | str | None = None,
        annotator: str | None = None,
        history: bool = False,
    ) -> list[Judgement]:
        """Current judgements (or the whole history), optionally of one set, query or annotator."""

        def run(conn: sqlite3.Connection) -> list[Judgement]:
            sql, params = JUDGEMENT_SQL + " WHERE 1 = 1", []
            if not history:
                sql += " AND j.state = 'current'"
            if eval_set is not None:
                sql += " AND j.query_id IN (SELECT query_id FROM eval_set_queries WHERE set_id = ?)"
                params.append(set_row_id(conn, eval_set))
            if query is not None:
                sql += " AND j.query_id = ?"
                params.append(query_row_id(conn, query))
            if annotator is not None:
                sql += " AND a.name = ?"
                params.append(str(annotator).strip())
            return [judgement_from_row(r) for r in conn.execute(sql + " ORDER BY j.id", params)]

        return self._read(run)

    def count_current(self) -> int:
        """The number of current judgements."""
        return self._conn().execute("SELECT COUNT(*) FROM judgements WHERE state = 'current'").fetchone()[0]

    def qrels(self, *, eval_set: str | None = None, aggregate: str = "mean") -> dict[str, dict[str, int]]:
        """The current judgements as qrels ``{qid: {docno: grade}}`` (pytrec_eval's shape).

        Args:
            eval_set: only the queries of this set (default: all).
            aggregate: how several annotators' grades of one result become one:
                ``"mean"`` (rounded half up) or ``"majority"`` (the most frequent grade, ties to the
                lower grade); see :func:`xmr.labels.schema.aggregate_grades`.
        """
        grouped: dict[str, dict[str, list[int]]] = {}
        for j in self.judgements(eval_set=eval_set):
            grouped.setdefault(j.qid, {}).setdefault(j.docno, []).append(j.grade)
        return {
            qid: {doc: aggregate_grades(grades, aggregate) for doc, grades in docs.items()}
            for qid, docs in grouped.items()
        }

    # ----------------------------------------------------------------- evaluation sets

    def create_eval_set(
        self, name: str, *, queries: Iterable[int | str] = (), description: str | None = None
    ) -> int:
        """Create (or extend) a named evaluation set with these queries; returns its id."""
        name = str(name).strip()
        if not name or any(c.isspace() or c in "/\\" for c in name):
            raise InputError(f"evaluation set name {name!r} must be a non-empty word (it names files)")
        wanted = list(queries)

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT id FROM eval_sets WHERE name = ?", (name,)).fetchone()
            set_id = row[0] if row else conn.execute(
                "INSERT INTO eval_sets(name, description, created_at) VALUES (?, ?, ?)",
                (name, description, utc_now()),
            ).lastrowid
            for q in wanted:
                conn.execute(
                    "INSERT OR IGNORE INTO eval_set_queries(set_id, query_id) VALUES (?, ?)",
                    (set_id, query_row_id(conn, q)),
                )
            return set_id

        return self._write(run)

    def list_eval_sets(self) -> list[EvalSet]:
        """The evaluation sets with their sizes (queries, queries with judgements, judgements)."""

        def run(conn: sqlite3.Connection) -> list[EvalSet]:
            rows = conn.execute(
                """
                SELECT s.name, s.description, s.created_at,
                       (SELECT COUNT(*) FROM eval_set_queries m WHERE m.set_id = s.id) AS n_queries,
                       (SELECT COUNT(DISTINCT j.query_id) FROM judgements j JOIN eval_set_queries m
                          ON m.query_id = j.query_id WHERE m.set_id = s.id AND j.state = 'current') AS n_jq,
                       (SELECT COUNT(*) FROM judgements j JOIN eval_set_queries m
                          ON m.query_id = j.query_id WHERE m.set_id = s.id AND j.state = 'current') AS n_j
                FROM eval_sets s ORDER BY s.id
                """
            ).fetchall()
            return [EvalSet(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

        return self._read(run)

    # ----------------------------------------------------------------- pools (see xmr.labels.pooling)

    def add_pool(
        self,
        name: str,
        *,
        runs: Mapping[str, Mapping[str, Sequence[tuple[str, float]]] | str | os.PathLike],
        depth: int = 10,
        overlap: int = 1,
        strategy: str = "mtf",
        eval_set: str | None = None,
    ) -> int:
        """Pool the top ``depth`` results of several runs for judging; returns the pool's id.

        Args:
            name: the pool's name (unique).
            runs: ``{run_name: run}`` with a run ``{qid: [(docno, score), ...]}`` or a TREC run
                file; docnos are ``"<modality>:<item_id>"``, qids must name queries of the store.
            depth: how deep into each run the pool reaches (depth-k pooling).
            overlap: how many annotators should grade each pooled item (2+ for agreement).
            strategy: the judging order, ``"mtf"``, ``"thompson"`` or ``"rank"``
                (see :func:`xmr.labels.pooling.judging_order`).
            eval_set: also put the pooled queries into this evaluation set.

        Example:
            >>> store.add_pool("demo-v1", runs={"ckpt-a": "a.run", "ckpt-b": "b.run"}, depth=10, overlap=2)
        """
        run_names, per_query = pooling.prepare_pool(runs, depth=depth, overlap=overlap, strategy=strategy)
        pool_id = self._write(lambda conn: pooling.create_pool(
            conn, name, run_names=run_names, per_query=per_query, depth=depth, overlap=overlap,
            strategy=strategy,
        ))
        if eval_set is not None:
            self.create_eval_set(eval_set, queries=list(per_query))
        return pool_id

    # ----------------------------------------------------------------- maintenance

    def backup(self, target: str | os.PathLike) -> Path:
        """A consistent copy of the database in one file, plus its media folder, while others write.

        SQLite's online backup API copies one snapshot (every grade committed before it started,
        none after) into ``target`` (written beside it first, then renamed, so a failed backup never
        leaves half a file under that name); the stored query media go to ``<target stem>_media/``.
        The copy is a plain database (no WAL) that :class:`LabelStore` opens as it is.

        Example:
            >>> store.backup("backups/labels-2024-05-01.sqlite")
        """
        target = Path(target).expanduser().resolve()
        if target == self.path:
            raise InputError(f"the backup must go to another file than the database {self.path.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.unlink(missing_ok=True)
        dst = sqlite3.connect(tmp)
        try:
            self._retry(lambda: self._conn().backup(dst))
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        finally:
            dst.close()
        tmp.replace(target)
        if self.media_dir.exists():
            shutil.copytree(self.media_dir, target.parent / f"{target.stem}_media", dirs_exist_ok=True)
        return target

    def counts(self) -> dict[str, int]:
        """Rows per table in one snapshot (judgements: every row of the history; current: current ones)."""
        return self._read(table_counts)
