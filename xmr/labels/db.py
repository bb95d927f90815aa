"""SQLite plumbing of the label store: a connection per thread and process, short transactions, retries.

Each thread (and each process) gets its own connection, because an ``sqlite3`` connection must not
be shared between threads. Every write is one short ``BEGIN IMMEDIATE`` transaction, so the write
lock is taken up front and two writers never deadlock on a lock upgrade; ``SQLITE_BUSY`` is absorbed
by the busy timeout and, past it, by a retry loop with jittered back-off, so callers never see it.
The journal is a write-ahead log (WAL), which needs a local file system, not NFS.

Until a checkpoint, committed transactions live in the ``-wal`` file beside the database; a copy of
the database file alone would miss them. So the WAL is checkpointed into the database file by a
background thread every ``checkpoint_every_s`` seconds and on :meth:`Database.close` (and at
interpreter exit, for a store nobody closed), and the database file is complete after a normal stop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from xmr.errors import InputError, XmrError
from xmr.labels.schema import StoreBusyError

T = TypeVar("T")
D = TypeVar("D", bound="Database")


def _is_busy(err: sqlite3.OperationalError) -> bool:
    msg = str(err).lower()
    return "locked" in msg or "busy" in msg


class Database:
    """One SQLite file in WAL mode, migrated to the newest schema on opening.

    Args:
        path: the database file (created with its folder if missing).
        migrations: the schema, one script per version (``PRAGMA user_version`` counts them).
        synchronous: ``"FULL"`` (default, survives a power cut), ``"NORMAL"`` (a killed process
            only) or ``"EXTRA"``.
        busy_timeout_ms: how long SQLite itself waits for a lock before the retry loop takes over.
        max_wait_s: the total time a transaction keeps retrying before :class:`StoreBusyError`.
        checkpoint_every_s: how often a background thread copies the WAL into the database file
            (``PRAGMA wal_checkpoint(PASSIVE)``, which never blocks writers); None: only on close.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        migrations: Sequence[str],
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        max_wait_s: float = 120.0,
        checkpoint_every_s: float | None = None,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise InputError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_wait_s = float(max_wait_s)
        self._local = threading.local()
        self._all: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._all_lock = threading.Lock()
        self.busy_retries = 0  # how often a write found the database locked past the busy timeout
        self.checkpoints = 0  # timer checkpoints done (a statistic)
        self._migrate(list(migrations))
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if checkpoint_every_s is not None:
            if not float(checkpoint_every_s) > 0:
                raise InputError(f"checkpoint_every_s must be positive or None, not {checkpoint_every_s!r}")
            self._timer = threading.Thread(
                target=_checkpoint_loop, args=(weakref.ref(self), self._stop, float(checkpoint_every_s)),
                name=f"checkpoint-{self.path.name}", daemon=True)
            self._timer.start()
        _OPEN.add(self)

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

    def _migrate(self, migrations: list[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise XmrError(
                    f"label database {self.path} has schema version {version}, newer than this xmr "
                    f"({len(migrations)}); upgrade xmr"
                )
            for number in range(version, len(migrations)):
                for statement in migrations[number].split(";"):
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

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy the WAL into the database file: ``(busy, wal frames, frames checkpointed)``.

        ``PASSIVE`` copies what it can without waiting for anyone; ``TRUNCATE`` waits for writers
        (busy timeout), copies everything and empties the ``-wal`` file.
        """
        mode = mode.upper()
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise InputError(f"checkpoint mode must be PASSIVE, FULL, RESTART or TRUNCATE, not {mode!r}")
        row = self._retry(lambda: self._conn().execute(f"PRAGMA wal_checkpoint({mode})").fetchone())
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        """Checkpoint the WAL into the database file, then close every connection this store opened
        in this process (when no other thread uses it)."""
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)
        with contextlib.suppress(sqlite3.Error, XmrError):
            self.checkpoint("TRUNCATE")
        _OPEN.discard(self)
        with self._all_lock:
            mine = [c for pid, c in self._all if pid == os.getpid()]
            for conn in mine:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all = [(pid, c) for pid, c in self._all if pid != os.getpid()]
        self._local = threading.local()

    def __enter__(self: D) -> D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()  # stores to checkpoint at interpreter exit


def _checkpoint_loop(ref: weakref.ref, stop: threading.Event, every_s: float) -> None:
    """Checkpoint the store ``ref`` names every ``every_s`` seconds until it is closed or collected."""
    while not stop.wait(every_s):
        db = ref()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error, XmrError):
            db.checkpoint("PASSIVE")
            db.checkpoints += 1
        del db  # no strong reference between rounds: a store nobody uses can be collected


@atexit.register
def _close_open_stores() -> None:
    for db in list(_OPEN):
        with contextlib.suppress(Exception):
            db.close()
