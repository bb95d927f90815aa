"""The label database's schema, its rows as dataclasses, and the document-number rule.

Tables (schema version in ``PRAGMA user_version``, upgraded by :data:`MIGRATIONS`; a new table or
column is a new entry appended to the list, never an edit of an old one):

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
- ``pools`` / ``pool_runs`` / ``pool_entries`` — what to judge next (see :mod:`xmr.labels.pooling`);
- ``reservations`` — leases: a pooled result shown to an annotator is theirs until it is graded or
  the lease runs out (``expires_at``, Unix seconds), so that two annotators are never given the same
  result beyond the pool's overlap (version 2).

Results are named by document numbers ``"<modality>:<item_id>"`` (:func:`make_docno`) in qrels,
runs and pools alike. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from xmr import MODALITIES
from xmr.errors import InputError, XmrError

GRADES = (0, 1, 2, 3)

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
    # 2: reservations (leases) of pooled results, one row per (query, result, annotator).
    """
    CREATE TABLE reservations (
        query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
        item_modality TEXT NOT NULL,
        item_id TEXT NOT NULL,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        pool TEXT,
        reserved_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (query_id, item_modality, item_id, annotator_id)
    );
    CREATE INDEX reservations_by_expiry ON reservations(expires_at);
    CREATE INDEX reservations_by_annotator ON reservations(annotator_id, reserved_at);
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


class _Result:
    """A result of a query, named by its document number (a base of the row classes below)."""

    item_modality: str
    item_id: str

    @property
    def docno(self) -> str:
        """``"<modality>:<item_id>"``, as in qrels and runs."""
        return make_docno(self.item_modality, self.item_id)


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
class Judgement(_Result):
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


@dataclasses.dataclass(frozen=True)
class UndoResult:
    """What :meth:`LabelStore.undo` did: the judgement it withdrew and the one now current again."""

    undone: Judgement
    restored: Judgement | None


@dataclasses.dataclass(frozen=True)
class PoolItem(_Result):
    """A result waiting for a grade: its query, its document, where the runs ranked it."""

    pool: str
    query_id: int
    qid: str
    item_modality: str
    item_id: str
    best_rank: int
    runs: tuple[str, ...]
    n_annotators: int


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
    reserved_items: int = 0  # items with a live reservation and fewer grades than the overlap


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


def as_grade(grade: Any) -> int:
    """A grade as an int; accepts ints (also numpy's) and digit strings (UI widgets send text)."""
    if isinstance(grade, str) and grade.strip().isdigit():
        return int(grade.strip())
    if isinstance(grade, bool):
        raise InputError(f"grade must be an integer 0-3, not {grade!r}")
    try:
        return operator.index(grade)
    except TypeError:
        raise InputError(f"grade must be an integer 0-3, not {grade!r}") from None


def aggregate_grades(grades: Sequence[int], method: str = "mean") -> int:
    """One grade from several annotators' grades of one result.

    ``mean``: the mean rounded half up (1 and 2 give 2); ``majority``: the most frequent grade,
    ties to the lower grade (a conservative label: a result is only as relevant as most say).

    Example:
        >>> aggregate_grades([1, 2], "mean"), aggregate_grades([1, 2], "majority")
        (2, 1)
    """
    if not grades:
        raise InputError("no grades to aggregate")
    if method == "mean":
        return int(math.floor(sum(grades) / len(grades) + 0.5))
    if method == "majority":
        counts = Counter(grades)
        top = max(counts.values())
        return min(g for g, c in counts.items() if c == top)
    raise InputError(f"aggregate must be 'mean' or 'majority' here, not {method!r}")


class EventSink(Protocol):
    """What receives the store's events (:class:`xmr.labels.hub.JsonlSync` is one)."""

    def on_query(self, query: Query) -> None: ...

    def on_judgement(self, judgement: Judgement, query: Query, *, event: str) -> None: ...


# ----------------------------------------------------------------- rows from and to SQL

QUERY_SQL = "SELECT q.*, a.name AS creator FROM queries q LEFT JOIN annotators a ON a.id = q.created_by"
JUDGEMENT_SQL = (
    "SELECT j.*, q.qid AS qid, a.name AS annotator FROM judgements j "
    "JOIN queries q ON q.id = j.query_id JOIN annotators a ON a.id = j.annotator_id"
)
JUDGEMENT_FIELDS = frozenset({"query", "item_id", "item_modality", "grade", "annotator",
                              "model_fingerprint", "index_version", "note", "at"})


def query_from_row(row: sqlite3.Row, media_dir: Path) -> Query:
    """A :class:`Query` from a row of :data:`QUERY_SQL` (its media path made absolute)."""
    media = (media_dir / row["media_path"]) if row["media_path"] else None
    return _from_row(Query, row, media_path=media, created_by=row["creator"])


def judgement_from_row(row: sqlite3.Row) -> Judgement:
    """A :class:`Judgement` from a row of :data:`JUDGEMENT_SQL`."""
    return _from_row(Judgement, row)


def _from_row(cls: type[T], row: sqlite3.Row, **values: Any) -> T:
    """A row dataclass from the columns of the same names, ``values`` taking precedence."""
    return cls(**{f.name: values[f.name] if f.name in values else row[f.name]
                  for f in dataclasses.fields(cls)})


def check_judgement(record: Mapping[str, Any]) -> dict[str, Any]:
    """A judgement record (the keywords of ``LabelStore.record_judgement``) checked and cleaned."""
    unknown = set(record) - JUDGEMENT_FIELDS
    if unknown:
        raise InputError(f"unknown judgement field(s) {sorted(unknown)}")
    grade = as_grade(record.get("grade"))
    if grade not in GRADES:
        raise InputError(f"grade must be 0, 1, 2 or 3, not {grade}")
    if record.get("item_modality") not in MODALITIES:
        raise InputError(f"item modality must be one of {MODALITIES}, not {record.get('item_modality')!r}")
    item_id = str(record.get("item_id", "")).strip()
    if not item_id or any(c.isspace() for c in item_id):
        raise InputError(f"item id {item_id!r} must be a non-empty word without spaces")
    return {**record, "grade": grade, "item_id": item_id, "at": record.get("at") or utc_now()}


# ----------------------------------------------------------------- lookups by key, inside a transaction


def query_row_id(conn: sqlite3.Connection, query: int | str | Query) -> int:
    """The row id of a query given as a :class:`Query`, its row id or its qid; InputError if absent."""
    if isinstance(query, Query):
        query = query.id
    if not isinstance(query, (str, bool)) and hasattr(query, "__index__"):  # int, numpy int
        row = conn.execute("SELECT id FROM queries WHERE id = ?", (operator.index(query),)).fetchone()
    else:
        row = conn.execute("SELECT id FROM queries WHERE qid = ?", (str(query),)).fetchone()
    if row is None:
        raise InputError(f"no query {query!r} in the label store")
    return row[0]


def annotator_row_id(conn: sqlite3.Connection, name: str) -> int:
    """The row id of an annotator, registered on first use."""
    name = str(name or "").strip()
    if not name:
        raise InputError("annotator name is empty")
    row = conn.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
    if row:
        return row[0]
    sql = "INSERT INTO annotators(name, created_at) VALUES (?, ?)"
    return conn.execute(sql, (name, utc_now())).lastrowid


COUNTED_TABLES = ("annotators", "queries", "judgements", "eval_sets", "pools", "pool_entries", "reservations")


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table (and ``current``: current judgements) of an open database, in one statement."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    parts = [f"(SELECT COUNT(*) FROM {t}) AS {t}" for t in COUNTED_TABLES if t in tables]
    if "judgements" in tables:
        parts.append("(SELECT COUNT(*) FROM judgements WHERE state = 'current') AS current")
    if not parts:
        return {}
    row = conn.execute("SELECT " + ", ".join(parts)).fetchone()
    return {name: int(v) for name, v in zip([p.rsplit(" AS ", 1)[1] for p in parts], tuple(row), strict=True)}


def set_row_id(conn: sqlite3.Connection, name: str) -> int:
    """The row id of an evaluation set; InputError if absent."""
    row = conn.execute("SELECT id FROM eval_sets WHERE name = ?", (str(name),)).fetchone()
    if row is None:
        raise InputError(f"no evaluation set {name!r} in the label store")
    return row[0]
