"""The relevance-judgement store: SQLite in WAL mode, safe under many annotators at once.

Tables (schema version in ``PRAGMA user_version``, upgraded by :data:`MIGRATIONS`):

- ``annotators`` — one row per person grading;
- ``queries`` — a query's modality and its text, or a stored copy of the uploaded media in the
  media folder beside the database (``<db stem>_media/``, content-addressed by SHA-256), who made
  it, when, and the corpus item it came from when a result became a query;
- ``judgements`` — every grade ever given (query, result item and its modality, grade 0–3,
  annotator, time, the model fingerprint and index version that produced the result, a note).
  A row is ``current``, ``replaced`` (a newer grade for the same query, item and annotator took
  its place) or ``undone``. A partial unique index keeps exactly one current row per
  (query, item, annotator), so the history is kept without ever having two answers;
- ``eval_sets`` / ``eval_set_queries`` — named sets of queries whose judgements are their qrels;
- ``pools`` / ``pool_runs`` / ``pool_entries`` — what to judge next (see :mod:`xmr.labels.pooling`).

Concurrency and durability: each thread (and each process) gets its own connection, because an
``sqlite3`` connection must not be shared between threads. Every write is one short
``BEGIN IMMEDIATE`` transaction, so the write lock is taken up front and two writers never
deadlock on a lock upgrade; ``SQLITE_BUSY`` is absorbed by the busy timeout and, past it, by a
retry loop with jittered back-off, so callers never see it. ``synchronous=FULL`` makes SQLite
fsync the write-ahead log at every commit: once :meth:`LabelStore.record_judgement` returns, the
grade survives a killed process and also a power cut (``NORMAL`` would survive a killed process
only, since WAL frames sit in the OS page cache until a checkpoint; a judgement is a human click, so
one fsync per click costs nothing a person would notice). WAL needs a local file system, not NFS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import operator
import os
import random
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from xmr.errors import InputError, XmrError

MODALITIES = ("audio", "image", "text")
GRADES = (0, 1, 2, 3)
MAX_MEDIA_BYTES = 50 * 1024 * 1024

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE annotators (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE queries (
        id INTEGER PRIMARY KEY,
        qid TEXT NOT NULL UNIQUE,
        modality TEXT NOT NULL CHECK (modality IN ('audio', 'image', 'text')),
        text TEXT,
        media_path TEXT,
        payload_sha256 TEXT NOT NULL,
        source_item_id TEXT,
        created_by INTEGER REFERENCES annotators(id),
        created_at TEXT NOT NULL,
        CHECK ((text IS NOT NULL) + (media_path IS NOT NULL) = 1)
    );
    CREATE INDEX queries_payload ON queries(modality, payload_sha256);
    CREATE TABLE judgements (
        id INTEGER PRIMARY KEY,
        query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
        item_modality TEXT NOT NULL CHECK (item_modality IN ('audio', 'image', 'text')),
        item_id TEXT NOT NULL,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        grade INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 3),
        at TEXT NOT NULL,
        model_fingerprint TEXT,
        index_version TEXT,
        note TEXT,
        previous_id INTEGER REFERENCES judgements(id),
        state TEXT NOT NULL DEFAULT 'current' CHECK (state IN ('current', 'replaced', 'undone'))
    );
    CREATE UNIQUE INDEX judgements_one_current
        ON judgements(query_id, item_modality, item_id, annotator_id) WHERE state = 'current';
    CREATE INDEX judgements_by_annotator ON judgements(annotator_id, state, id);
    CREATE TABLE eval_sets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE eval_set_queries (
        set_id INTEGER NOT NULL REFERENCES eval_sets(id) ON DELETE CASCADE,
        query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
        PRIMARY KEY (set_id, query_id)
    );
    CREATE TABLE pools (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        depth INTEGER NOT NULL CHECK (depth > 0),
        overlap INTEGER NOT NULL CHECK (overlap > 0),
        strategy TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE pool_runs (
        pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
        run_index INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (pool_id, run_index)
    );
    CREATE TABLE pool_entries (
        pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
        query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
        run_index INTEGER NOT NULL,
        rank INTEGER NOT NULL,
        item_modality TEXT NOT NULL,
        item_id TEXT NOT NULL,
        score REAL,
        PRIMARY KEY (pool_id, query_id, run_index, rank)
    );
    CREATE INDEX pool_entries_by_query ON pool_entries(query_id);
    """,
]


class StoreBusyError(XmrError):
    """The database stayed locked by other writers for longer than the store's patience."""


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_docno(modality: str, item_id: str) -> str:
    """The document number of a result in qrels and runs: ``"<modality>:<item_id>"``."""
    return f"{modality}:{item_id}"


def parse_docno(docno: str) -> tuple[str, str]:
    """Split ``"<modality>:<item_id>"`` into its parts; raises InputError otherwise."""
    modality, sep, item_id = str(docno).partition(":")
    if not sep or modality not in MODALITIES or not item_id:
        raise InputError(
            f"document number {docno!r} is not '<modality>:<item_id>' with modality in {MODALITIES}"
        )
    return modality, item_id


@dataclasses.dataclass(frozen=True)
class Query:
    """A query to judge results for; ``media_path`` is absolute (the stored copy) or None."""

    id: int
    qid: str
    modality: str
    text: str | None
    media_path: Path | None
    source_item_id: str | None
    created_by: str | None
    created_at: str


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One grade of one result of one query by one annotator (a row of the history)."""

    id: int
    query_id: int
    qid: str
    item_modality: str
    item_id: str
    annotator: str
    grade: int
    at: str
    model_fingerprint: str | None
    index_version: str | None
    note: str | None
    previous_id: int | None
    state: str

    @property
    def docno(self) -> str:
        return make_docno(self.item_modality, self.item_id)


@dataclasses.dataclass(frozen=True)
class UndoResult:
    """What :meth:`LabelStore.undo` did: the judgement it withdrew and the one now current again."""

    undone: Judgement
    restored: Judgement | None


@dataclasses.dataclass(frozen=True)
class PoolItem:
    """A result waiting for a grade: its query, its document, where the runs ranked it."""

    pool: str
    query_id: int
    qid: str
    item_modality: str
    item_id: str
    best_rank: int
    runs: tuple[str, ...]
    n_annotators: int

    @property
    def docno(self) -> str:
        return make_docno(self.item_modality, self.item_id)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """A named set of queries; its qrels are the current judgements of those queries."""

    name: str
    description: str | None
    created_at: str
    n_queries: int
    n_judged_queries: int
    n_judgements: int


@dataclasses.dataclass(frozen=True)
class AnnotatorProgress:
    annotator: str
    judged: int
    queries: int
    remaining: int


@dataclasses.dataclass(frozen=True)
class QueryProgress:
    qid: str
    pool_size: int
    judged_items: int
    complete_items: int
    annotators: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Progress:
    """Progress of the labelling: per annotator and per query (pools only count pooled items)."""

    annotators: list[AnnotatorProgress]
    queries: list[QueryProgress]

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotators": [dataclasses.asdict(a) for a in self.annotators],
            "queries": [dataclasses.asdict(q) for q in self.queries],
        }


def _as_grade(grade: Any) -> int:
    """A grade as an int; accepts ints (also numpy's) and digit strings (UI widgets send text)."""
    if isinstance(grade, str) and grade.strip().isdigit():
        return int(grade.strip())
    if isinstance(grade, bool):
        raise InputError(f"grade must be an integer 0-3, not {grade!r}")
    try:
        return operator.index(grade)
    except TypeError:
        raise InputError(f"grade must be an integer 0-3, not {grade!r}") from None


def _is_busy(err: sqlite3.OperationalError) -> bool:
    msg = str(err).lower()
    return "locked" in msg or "busy" in msg


def _sniff_extension(data: bytes) -> str:
    """A file extension from the first bytes of a media file (the stored copy keeps it)."""
    heads = {
        b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"GIF8": ".gif", b"fLaC": ".flac",
        b"OggS": ".ogg", b"ID3": ".mp3", b"\xff\xfb": ".mp3", b"\xff\xf3": ".mp3", b"BM": ".bmp",
    }
    for head, ext in heads.items():
        if data.startswith(head):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"


def _media_bytes(modality: str, media: Any) -> tuple[bytes, str]:
    """Bytes and extension of an upload: a path, bytes, a PIL image / array, or ``(sr, array)``."""
    if isinstance(media, (str, os.PathLike)):
        path = Path(media)
        if not path.is_file():
            raise InputError(f"query media {path} does not exist")
        if path.stat().st_size > MAX_MEDIA_BYTES:
            raise InputError(f"query media {path} is larger than {MAX_MEDIA_BYTES // 2**20} MB")
        data = path.read_bytes()
        return data, (path.suffix.lower() or _sniff_extension(data))
    if isinstance(media, (bytes, bytearray, memoryview)):
        data = bytes(media)
        if len(data) > MAX_MEDIA_BYTES:
            raise InputError(f"query media is larger than {MAX_MEDIA_BYTES // 2**20} MB")
        return data, _sniff_extension(data)
    import io

    import numpy as np

    if modality == "audio" and isinstance(media, tuple) and len(media) == 2:
        import soundfile as sf

        sr, wave = media
        buf = io.BytesIO()
        sf.write(buf, np.asarray(wave), int(sr), format="FLAC")
        return buf.getvalue(), ".flac"
    if modality == "image":
        from PIL import Image

        img = media if isinstance(media, Image.Image) else Image.fromarray(np.asarray(media))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    raise InputError(f"cannot store a {type(media).__name__} as {modality} query media")


class LabelStore:
    """The judgement store over one SQLite file; safe to use from many threads and processes.

    Args:
        path: the database file (created with its folder if missing).
        synchronous: ``"FULL"`` (default, survives a power cut) or ``"NORMAL"`` (survives a killed
            process only).
        busy_timeout_ms: how long SQLite itself waits for a lock before the retry loop takes over.
        max_wait_s: the total time a write keeps retrying before :class:`StoreBusyError`.
        sync: an optional :class:`xmr.labels.hub.JsonlSync` that receives every event; by default
            one is made from ``XMR_LABELS_HUB_REPO`` when that is set (see :func:`xmr.labels.hub.from_env`);
            ``False`` turns it off.

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
        sync: Any = None,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise InputError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.media_dir = self.path.parent / f"{self.path.stem}_media"
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_wait_s = float(max_wait_s)
        self._local = threading.local()
        self._all: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._all_lock = threading.Lock()
        self.busy_retries = 0  # how often a write found the database locked past the busy timeout
        if sync is None:
            from xmr.labels.hub import from_env

            sync = from_env()
        self.sync = sync or None  # False: off even when the environment turns it on
        self._migrate()

    # ----------------------------------------------------------------- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork: inherited handles are never reused)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: autocommit; transactions are opened explicitly below.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            # Kept referenced: a connection inherited through fork must never be closed (or garbage
            # collected) in the child, where SQLite's locks do not belong to it.
            self._all.append((os.getpid(), conn))
        return conn

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.max_wait_s
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or time.monotonic() > deadline:
                    if _is_busy(err):
                        raise StoreBusyError(
                            f"label database {self.path} stayed locked for {self.max_wait_s:.0f} s"
                        ) from err
                    raise
                self.busy_retries += 1  # a statistic only; racy increments are fine
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried as a whole while busy."""
        conn = self._conn()

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return out

        return self._retry(attempt)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot across its statements)."""
        conn = self._conn()

        def attempt() -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return self._retry(attempt)

    def _migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise XmrError(
                    f"label database {self.path} has schema version {version}, newer than this xmr "
                    f"({len(MIGRATIONS)}); upgrade xmr"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number + 1}")

        self._write(run)

    @property
    def schema_version(self) -> int:
        return self._conn().execute("PRAGMA user_version").fetchone()[0]

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        return self._conn().execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        """Close every connection this store opened in this process (when no other thread uses it)."""
        with self._all_lock:
            mine = [c for pid, c in self._all if pid == os.getpid()]
            for conn in mine:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all = [(pid, c) for pid, c in self._all if pid != os.getpid()]
        self._local = threading.local()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- annotators and queries

    @staticmethod
    def _annotator_id(conn: sqlite3.Connection, name: str) -> int:
        name = str(name or "").strip()
        if not name:
            raise InputError("annotator name is empty")
        row = conn.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        sql = "INSERT INTO annotators(name, created_at) VALUES (?, ?)"
        return conn.execute(sql, (name, utc_now())).lastrowid

    def add_annotator(self, name: str) -> int:
        """Register an annotator (idempotent); returns its id."""
        return self._write(lambda conn: self._annotator_id(conn, name))

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
        if (text is None) == (media is None):
            raise InputError("a query needs exactly one of text or media")
        stored_rel: str | None = None
        if text is not None:
            text = str(text).strip()
            if not text:
                raise InputError("query text is empty")
            sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        else:
            data, ext = _media_bytes(modality, media)
            if not data:
                raise InputError("query media is empty")
            sha = hashlib.sha256(data).hexdigest()
            stored_rel = f"{sha[:2]}/{sha}{ext}"
            target = self.media_dir / stored_rel
            if not target.exists():
                # Written before the row that points at it, atomically, so a crash never leaves a
                # row pointing at half a file.
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
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
            creator = self._annotator_id(conn, created_by) if created_by else None
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

    _QUERY_SQL = (
        "SELECT q.*, a.name AS creator FROM queries q LEFT JOIN annotators a ON a.id = q.created_by"
    )

    def _query_from_row(self, row: sqlite3.Row) -> Query:
        return Query(
            id=row["id"], qid=row["qid"], modality=row["modality"], text=row["text"],
            media_path=(self.media_dir / row["media_path"]) if row["media_path"] else None,
            source_item_id=row["source_item_id"], created_by=row["creator"], created_at=row["created_at"],
        )

    @staticmethod
    def _query_id(conn: sqlite3.Connection, query: int | str) -> int:
        if isinstance(query, Query):
            query = query.id
        if not isinstance(query, (str, bool)) and hasattr(query, "__index__"):  # int, numpy int
            row = conn.execute("SELECT id FROM queries WHERE id = ?", (operator.index(query),)).fetchone()
        else:
            row = conn.execute("SELECT id FROM queries WHERE qid = ?", (str(query),)).fetchone()
        if row is None:
            raise InputError(f"no query {query!r} in the label store")
        return row[0]

    def get_query(self, query: int | str) -> Query:
        """A query by id or qid."""

        def run(conn: sqlite3.Connection) -> Query:
            qid = self._query_id(conn, query)
            return self._query_from_row(conn.execute(self._QUERY_SQL + " WHERE q.id = ?", (qid,)).fetchone())

        return self._read(run)

    def list_queries(self, *, eval_set: str | None = None) -> list[Query]:
        """All queries, or those of one evaluation set, in id order."""

        def run(conn: sqlite3.Connection) -> list[Query]:
            if eval_set is None:
                rows = conn.execute(self._QUERY_SQL + " ORDER BY q.id").fetchall()
            else:
                set_id = self._set_id(conn, eval_set)
                rows = conn.execute(
                    self._QUERY_SQL + " JOIN eval_set_queries s ON s.query_id = q.id WHERE s.set_id = ? "
                    "ORDER BY q.id",
                    (set_id,),
                ).fetchall()
            return [self._query_from_row(r) for r in rows]

        return self._read(run)

    # ----------------------------------------------------------------- judgements

    _JUDGEMENT_SQL = (
        "SELECT j.*, q.qid AS qid, a.name AS annotator FROM judgements j "
        "JOIN queries q ON q.id = j.query_id JOIN annotators a ON a.id = j.annotator_id"
    )

    @staticmethod
    def _judgement_from_row(row: sqlite3.Row) -> Judgement:
        return Judgement(
            id=row["id"], query_id=row["query_id"], qid=row["qid"], item_modality=row["item_modality"],
            item_id=row["item_id"], annotator=row["annotator"], grade=row["grade"], at=row["at"],
            model_fingerprint=row["model_fingerprint"], index_version=row["index_version"],
            note=row["note"], previous_id=row["previous_id"], state=row["state"],
        )

    def _get_judgement(self, conn: sqlite3.Connection, jid: int) -> Judgement:
        row = conn.execute(self._JUDGEMENT_SQL + " WHERE j.id = ?", (jid,)).fetchone()
        return self._judgement_from_row(row)

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
        clean = []
        for r in records:
            unknown = set(r) - {"query", "item_id", "item_modality", "grade", "annotator",
                                "model_fingerprint", "index_version", "note", "at"}
            if unknown:
                raise InputError(f"unknown judgement field(s) {sorted(unknown)}")
            grade = _as_grade(r.get("grade"))
            if grade not in GRADES:
                raise InputError(f"grade must be 0, 1, 2 or 3, not {grade}")
            if r.get("item_modality") not in MODALITIES:
                raise InputError(f"item modality must be one of {MODALITIES}, not {r.get('item_modality')!r}")
            item_id = str(r.get("item_id", "")).strip()
            if not item_id or any(c.isspace() for c in item_id):
                raise InputError(f"item id {item_id!r} must be a non-empty word without spaces")
            clean.append({**r, "grade": grade, "item_id": item_id, "at": r.get("at") or utc_now()})

        def run(conn: sqlite3.Connection) -> list[int]:
            ids = []
            for r in clean:
                qid = self._query_id(conn, r["query"])
                aid = self._annotator_id(conn, r.get("annotator"))
                old = conn.execute(
                    "SELECT id FROM judgements WHERE query_id = ? AND item_modality = ? AND item_id = ? "
                    "AND annotator_id = ? AND state = 'current'",
                    (qid, r["item_modality"], r["item_id"], aid),
                ).fetchone()
                previous = old[0] if old else None
                if previous is not None:
                    conn.execute("UPDATE judgements SET state = 'replaced' WHERE id = ?", (previous,))
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
            row = conn.execute(self._JUDGEMENT_SQL + " WHERE j.id = ?", (int(judgement_id),)).fetchone()
            if row is None:
                raise InputError(f"no judgement {judgement_id}")
            return self._judgement_from_row(row)

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
                params.append(self._query_id(conn, query))
            last = conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if last is None:
                return None
            conn.execute("UPDATE judgements SET state = 'undone' WHERE id = ?", (last["id"],))
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
            qid = self._query_id(conn, query)
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
            sql, params = self._JUDGEMENT_SQL + " WHERE 1 = 1", []
            if not history:
                sql += " AND j.state = 'current'"
            if eval_set is not None:
                sql += " AND j.query_id IN (SELECT query_id FROM eval_set_queries WHERE set_id = ?)"
                params.append(self._set_id(conn, eval_set))
            if query is not None:
                sql += " AND j.query_id = ?"
                params.append(self._query_id(conn, query))
            if annotator is not None:
                sql += " AND a.name = ?"
                params.append(str(annotator).strip())
            return [self._judgement_from_row(r) for r in conn.execute(sql + " ORDER BY j.id", params)]

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
                lower grade); see :func:`xmr.labels.export.aggregate_grades`.
        """
        from xmr.labels.export import aggregate_grades

        grouped: dict[str, dict[str, list[int]]] = {}
        for j in self.judgements(eval_set=eval_set):
            grouped.setdefault(j.qid, {}).setdefault(j.docno, []).append(j.grade)
        return {
            qid: {doc: aggregate_grades(grades, aggregate) for doc, grades in docs.items()}
            for qid, docs in grouped.items()
        }

    # ----------------------------------------------------------------- evaluation sets

    @staticmethod
    def _set_id(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM eval_sets WHERE name = ?", (str(name),)).fetchone()
        if row is None:
            raise InputError(f"no evaluation set {name!r} in the label store")
        return row[0]

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
                    (set_id, self._query_id(conn, q)),
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

    # ----------------------------------------------------------------- pools

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
        from xmr.labels.pooling import STRATEGIES, depth_pool, read_trec_run

        if strategy not in STRATEGIES:
            raise InputError(f"pooling strategy must be one of {STRATEGIES}, not {strategy!r}")
        if int(depth) < 1 or int(overlap) < 1:
            raise InputError("pool depth and overlap must be at least 1")
        if not runs:
            raise InputError("a pool needs at least one run")
        loaded = {
            str(rn): (read_trec_run(r) if isinstance(r, (str, os.PathLike)) else r) for rn, r in runs.items()
        }
        per_query = depth_pool(loaded, depth=int(depth))  # validates docnos

        def run(conn: sqlite3.Connection) -> int:
            if conn.execute("SELECT 1 FROM pools WHERE name = ?", (str(name),)).fetchone():
                raise InputError(f"a pool named {name!r} already exists")
            pool_id = conn.execute(
                "INSERT INTO pools(name, depth, overlap, strategy, created_at) VALUES (?, ?, ?, ?, ?)",
                (str(name), int(depth), int(overlap), strategy, utc_now()),
            ).lastrowid
            run_names = list(loaded)
            for index, rn in enumerate(run_names):
                conn.execute("INSERT INTO pool_runs VALUES (?, ?, ?)", (pool_id, index, rn))
            for qid, lists in per_query.items():
                query_id = self._query_id(conn, qid)
                for index, rn in enumerate(run_names):
                    for rank, (docno, score) in enumerate(lists.get(rn, []), start=1):
                        modality, item_id = parse_docno(docno)
                        conn.execute(
                            "INSERT INTO pool_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (pool_id, query_id, index, rank, modality, item_id, score),
                        )
            return pool_id

        pool_id = self._write(run)
        if eval_set is not None:
            self.create_eval_set(eval_set, queries=list(per_query))
        return pool_id

    def list_pools(self) -> list[dict[str, Any]]:
        """The pools: name, depth, overlap, strategy, runs, number of queries."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for p in conn.execute("SELECT * FROM pools ORDER BY id").fetchall():
                runs = [r[0] for r in conn.execute(
                    "SELECT name FROM pool_runs WHERE pool_id = ? ORDER BY run_index", (p["id"],))]
                nq = conn.execute(
                    "SELECT COUNT(DISTINCT query_id) FROM pool_entries WHERE pool_id = ?", (p["id"],)
                ).fetchone()[0]
                out.append({"name": p["name"], "depth": p["depth"], "overlap": p["overlap"],
                            "strategy": p["strategy"], "runs": runs, "queries": nq})
            return out

        return self._read(run)

    def _pool_state(self, conn: sqlite3.Connection, pool: str | None) -> list[dict[str, Any]]:
        """Everything the judging order needs, per (pool, query), read in one snapshot."""
        sql = "SELECT * FROM pools"
        params: tuple = ()
        if pool is not None:
            sql += " WHERE name = ?"
            params = (str(pool),)
        pools = conn.execute(sql + " ORDER BY id", params).fetchall()
        if pool is not None and not pools:
            raise InputError(f"no pool {pool!r} in the label store")
        grades: dict[tuple[int, str], dict[str, int]] = {}
        pool_ids = [p["id"] for p in pools]
        marks = ", ".join("?" * len(pool_ids))
        for r in conn.execute(
            "SELECT j.query_id, j.item_modality, j.item_id, a.name, j.grade FROM judgements j "
            "JOIN annotators a ON a.id = j.annotator_id WHERE j.state = 'current' AND j.query_id IN "
            f"(SELECT DISTINCT query_id FROM pool_entries WHERE pool_id IN ({marks}))",
            pool_ids,
        ):
            grades.setdefault((r[0], make_docno(r[1], r[2])), {})[r[3]] = r[4]
        states = []
        for p in pools:
            run_names = [r[0] for r in conn.execute(
                "SELECT name FROM pool_runs WHERE pool_id = ? ORDER BY run_index", (p["id"],))]
            entries: dict[int, list[list[str]]] = {}
            qids: dict[int, str] = {}
            for r in conn.execute(
                "SELECT e.query_id, q.qid, e.run_index, e.item_modality, e.item_id FROM pool_entries e "
                "JOIN queries q ON q.id = e.query_id WHERE e.pool_id = ? "
                "ORDER BY e.query_id, e.run_index, e.rank",
                (p["id"],),
            ):
                lists = entries.setdefault(r[0], [[] for _ in run_names])
                lists[r[2]].append(make_docno(r[3], r[4]))
                qids[r[0]] = r[1]
            for query_id, lists in entries.items():
                docs = {d for lst in lists for d in lst}
                states.append({
                    "pool": p["name"], "overlap": p["overlap"], "strategy": p["strategy"],
                    "query_id": query_id, "qid": qids[query_id], "run_names": run_names, "lists": lists,
                    "grades": {d: grades.get((query_id, d), {}) for d in docs},
                })
        return states

    def next_items(
        self, annotator: str, n: int = 10, *, pool: str | None = None, query: int | str | None = None
    ) -> list[PoolItem]:
        """The next ``n`` pooled results for this annotator to grade, best first.

        Items this annotator has graded are never returned, nor items that already have
        ``overlap`` annotators. Queries the annotator has started come first (to finish them);
        the others follow in an order rotated per annotator, so that annotators working at once
        spread over different queries. Within a query the pool's strategy orders the items.

        Example:
            >>> for item in store.next_items("ada", 5):
            ...     print(item.qid, item.docno, item.best_rank)
        """
        annotator = str(annotator).strip()
        if not annotator:
            raise InputError("annotator name is empty")

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            only = self._query_id(conn, query) if query is not None else None
            return [s for s in self._pool_state(conn, pool) if only is None or s["query_id"] == only]

        states = self._read(run)
        rot = zlib.crc32(annotator.encode("utf-8"))
        started = [s for s in states if any(annotator in g for g in s["grades"].values())]
        fresh = [s for s in states if s not in started]
        if fresh:
            k = rot % len(fresh)
            fresh = fresh[k:] + fresh[:k]
        out: list[PoolItem] = []
        for s in started + fresh:
            if len(out) >= n:
                break
            for item in self._ordered(s):
                g = s["grades"][item.docno]
                if annotator in g or len(g) >= s["overlap"]:
                    continue
                out.append(item)
                if len(out) >= n:
                    break
        return out

    @staticmethod
    def _ordered(state: dict[str, Any]) -> list[PoolItem]:
        """A (pool, query)'s pooled results in the pool's judging order."""
        from xmr.labels.pooling import judging_order

        s = state
        # A result counts as relevant when its annotators' mean grade is at least 1.
        relevance = {d: (sum(g.values()) / len(g) >= 1) if g else None for d, g in s["grades"].items()}
        items = []
        for docno in judging_order(s["lists"], relevance, strategy=s["strategy"], seed=s["query_id"]):
            ranks = [(lst.index(docno) + 1, s["run_names"][i]) for i, lst in enumerate(s["lists"])
                     if docno in lst]
            modality, item_id = parse_docno(docno)
            items.append(PoolItem(
                pool=s["pool"], query_id=s["query_id"], qid=s["qid"], item_modality=modality,
                item_id=item_id, best_rank=min(r for r, _ in ranks), runs=tuple(rn for _, rn in ranks),
                n_annotators=len(s["grades"][docno]),
            ))
        return items

    def pool_items(self, *, query: int | str, pool: str | None = None) -> list[PoolItem]:
        """All pooled results of one query (graded or not), in judging order, for a results view.

        Pair it with :meth:`current_grades` to show an annotator's grades next to each result.
        """

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            only = self._query_id(conn, query)
            return [s for s in self._pool_state(conn, pool) if s["query_id"] == only]

        return [item for s in self._read(run) for item in self._ordered(s)]

    def progress(self, *, pool: str | None = None) -> Progress:
        """Progress per annotator (graded, queries touched, pooled items left for them) and per query."""
        states = self._read(lambda conn: self._pool_state(conn, pool))

        def run(conn: sqlite3.Connection) -> tuple[list, dict]:
            per_ann = conn.execute(
                "SELECT a.name, COUNT(j.id), COUNT(DISTINCT j.query_id) FROM annotators a LEFT JOIN "
                "judgements j ON j.annotator_id = a.id AND j.state = 'current' GROUP BY a.id ORDER BY a.id"
            ).fetchall()
            qids = {r[0]: r[1] for r in conn.execute("SELECT id, qid FROM queries")}
            return per_ann, qids

        per_ann, _ = self._read(run)
        annotators = []
        for name, judged, nq in per_ann:
            remaining = sum(
                1 for s in states for g in s["grades"].values() if name not in g and len(g) < s["overlap"]
            )
            annotators.append(
                AnnotatorProgress(annotator=name, judged=judged, queries=nq, remaining=remaining)
            )
        queries = []
        for s in states:
            gs = s["grades"].values()
            queries.append(QueryProgress(
                qid=s["qid"], pool_size=len(s["grades"]), judged_items=sum(1 for g in gs if g),
                complete_items=sum(1 for g in gs if len(g) >= s["overlap"]),
                annotators=tuple(sorted({a for g in gs for a in g})),
            ))
        return Progress(annotators=annotators, queries=queries)

    # ----------------------------------------------------------------- maintenance

    def backup(self, target: str | os.PathLike) -> Path:
        """A consistent copy of the database (SQLite's online backup) plus its media folder."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(target)
        try:
            self._conn().backup(dst)
        finally:
            dst.close()
        if self.media_dir.exists():
            shutil.copytree(self.media_dir, target.parent / f"{target.stem}_media", dirs_exist_ok=True)
        return target
