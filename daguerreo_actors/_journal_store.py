"""The journal's SQLite file and its one writer: schema, group commit, queries.

One :class:`Store` per open journal owns one ``sqlite3`` connection (WAL
mode, ``synchronous=NORMAL``: a committed transaction survives the process
being killed, ``kill -9`` included; only a power cut may lose the last
ones). Tables:

- ``jobs``: one row per job (id, the job it resumed, start and end, final
  state, the task list's fingerprint, options as JSON, and the job that
  resumed it, if any).
- ``tasks``: each task's definition fingerprint, per job.
- ``transitions``: every task and job transition (``task`` null for the
  job), one row per batch the JobActor's outbox flushed (a JSON list: a row
  per transition cost 4 µs each, most of a journal's cost on a wide job).
- ``outputs``: each completed task's serialized output, in merge order
  (``seq``), where a restored one came from, and when it completed: the
  row is its RUNNING -> COMPLETED transition.
- ``leases``: which live process drives a job (pid, host, process start).

The writer is an actor without a thread of its own, like the JobActor: its
mailbox is ``_pending`` (statements), and whoever holds ``_lock`` drains
it into one transaction, a numbered *batch*. Everything is queued (never
waited for by the JobActor) and committed by a pool thread ``FLUSH_DELAY``
after it was queued, with all that came meanwhile; a thread that needs a
batch sooner (a dependent about to start) commits it itself
(``wait_committed``). A failed batch is remembered and raised to whoever
waits for it. Measured on this VM: a commit costs 40-90 µs in a busy
job; a row about 4 µs in a batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from daguerreo_actors._errors import JournalError
from daguerreo_actors._logging import log_outside
from daguerreo_actors._pool import shared_pool

#: Real seconds a commit waits for the connection before giving up.
COMMIT_TIMEOUT = 30.0
#: Parameters per statement (SQLite's default limit is 32,766 since 3.32).
_MAX_VARIABLES = 30_000
#: Seconds between queueing and the background commit (batches what comes meanwhile).
FLUSH_DELAY = 0.02
#: Queued statements past which posting drains inline (bounded memory).
MAX_PENDING = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    resumed_from TEXT,
    resumed_by TEXT,
    started REAL NOT NULL,
    ended REAL,
    state TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    tasks INTEGER NOT NULL,
    options TEXT NOT NULL,
    pid INTEGER,
    host TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    job_id TEXT NOT NULL,
    task TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    dependencies TEXT NOT NULL,
    PRIMARY KEY (job_id, task)
);
CREATE TABLE IF NOT EXISTS transitions (
    job_id TEXT NOT NULL,
    entries TEXT NOT NULL  -- JSON: [[task, old, new, attempt, ts, reason, error], ...]
);
CREATE TABLE IF NOT EXISTS outputs (
    seq INTEGER PRIMARY KEY,  -- merge order (no AUTOINCREMENT: a write less per commit)
    job_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    output BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    restored_from TEXT,
    reads BLOB,
    ts REAL,
    UNIQUE (job_id, task)
);
CREATE INDEX IF NOT EXISTS outputs_by_task ON outputs (task, fingerprint);
CREATE TABLE IF NOT EXISTS leases (
    job_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    process_start TEXT,
    token TEXT NOT NULL
);
"""

Statement = tuple[str, tuple[Any, ...]]

INSERT_TRANSITIONS = "INSERT INTO transitions (job_id, entries) VALUES (?, ?)"
#: A pseudo-statement: (job_id, [transition entries]); a drain writes one row per job.
ENTRIES = "entries"


class Store:
    """One journal file: the connection, its writer mailbox, and the reads."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=COMMIT_TIMEOUT
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # One transaction: a process killed while creating the schema leaves
            # none of it, never some tables without the others.
            connection.executescript(f"BEGIN;\n{SCHEMA}\nCOMMIT;")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path!r}: {exc}") from exc
        self._db = connection
        self._lock = threading.Lock()  # the connection's: held by whoever drains
        self._pending_lock = threading.Lock()
        self._pending: list[Statement] = []
        self._batch = 0  # the number of the batch now being filled
        self._committed = 0  # batches before this one are committed (or failed)
        self._failed: dict[int, BaseException] = {}
        self._scheduled = False
        self._closed = False
        self._timers: Any = None  # a supervisor timer group, once a drain is scheduled

    # -- writing -------------------------------------------------------------------

    def post(self, statements: Iterable[Statement]) -> None:
        """Queue statements; a pool thread commits them soon (never waits for the disk)."""
        with self._pending_lock:
            self._pending.extend(statements)
            # Past MAX_PENDING, drain now on the pool rather than after the delay.
            urgent = len(self._pending) > MAX_PENDING
            schedule = not self._scheduled
            if schedule:
                self._scheduled = True
        if urgent:
            shared_pool().execute(_Drain(self))
        elif schedule:
            self.schedule()

    def queue(self, statements: Iterable[Statement]) -> tuple[int, bool]:
        """Queue statements (cheap: callers may hold a lock); (their batch, schedule?)."""
        with self._pending_lock:
            self._pending.extend(statements)
            schedule = not self._scheduled
            self._scheduled = True
            return self._batch, schedule

    def schedule(self) -> None:
        """Drain on a pool thread in ``FLUSH_DELAY`` seconds (what queues meanwhile joins).

        A dependent that needs a batch sooner commits it itself
        (``wait_committed``): a chain never waits for this timer, nor hands
        each commit to another thread.
        """
        from daguerreo_actors._clock import REAL_CLOCK, real_monotonic

        if self._timers is None:
            self._timers = REAL_CLOCK.timers(lambda _reason: shared_pool().execute(_Drain(self)))
        self._timers.call_at(
            real_monotonic() + FLUSH_DELAY, lambda: shared_pool().execute(_Drain(self))
        )

    def wait_committed(self, batch: int) -> None:
        """Return once ``batch`` is committed; raise JournalError if it failed."""
        if self._committed <= batch:
            if not self._lock.acquire(timeout=COMMIT_TIMEOUT):
                raise JournalError(f"the journal {self.path!r} stayed busy")
            try:
                if self._committed <= batch:
                    self._drain_locked()
            finally:
                self._lock.release()
        error = self._failed.get(batch)
        if error is not None:
            raise JournalError(f"the journal {self.path!r} could not be written: {error}")

    def commit(self, statements: Iterable[Statement]) -> None:
        """Queue statements and return once they are committed (raises JournalError)."""
        with self._pending_lock:
            self._pending.extend(statements)
            mine = self._batch
        self.wait_committed(mine)

    def drain(self) -> None:
        """Commit whatever is queued (a pool thread, or ``flush``)."""
        with self._pending_lock:
            self._scheduled = False
        if not self._lock.acquire(timeout=COMMIT_TIMEOUT):
            return  # whoever holds it drains what is queued
        try:
            self._drain_locked()
        finally:
            self._lock.release()

    def _drain_locked(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
            number = self._batch
            self._batch += 1
        try:
            if batch and self._closed:
                raise JournalError("the journal was closed first")
            if batch:
                self._run(batch)
        except BaseException as exc:  # noqa: BLE001 - recorded: whoever waits for it raises
            self._failed[number] = exc
            log_outside(logging.ERROR, "journal_write_failed", path=self.path, error=str(exc))
        finally:
            self._committed = number + 1

    def _run(self, batch: Sequence[Statement]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # One executemany per statement, each in queue order: rows of
            # one table keep their order, and that is all order means here.
            by_sql: dict[str, list[tuple[Any, ...]]] = {}
            entries: dict[str, list[Any]] = {}
            for sql, params in batch:
                if sql is ENTRIES:
                    entries.setdefault(params[0], []).extend(params[1])
                else:
                    by_sql.setdefault(sql, []).append(params)
            if entries:
                # Encoded here, on the writer's side: never on the JobActor's.
                by_sql[INSERT_TRANSITIONS] = [
                    (job, json.dumps(found)) for job, found in entries.items()
                ]
            for sql, rows in by_sql.items():
                _insert(db, sql, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def transaction(self) -> _Transaction:
        """The connection, under the writer's lock, in one immediate transaction."""
        return _Transaction(self)

    # -- reading -------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._locked("read"):
            return list(self._db.execute(sql, params))

    def close(self) -> None:
        if self._timers is not None:
            self._timers.close()
        self.drain()
        with self._locked("close"):
            if not self._closed:
                self._closed = True
                self._db.close()

    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        """The connection, waited for at most COMMIT_TIMEOUT (every wait has a deadline)."""
        if not self._lock.acquire(timeout=COMMIT_TIMEOUT):
            raise JournalError(f"cannot {what} the journal {self.path!r}: it stayed busy")
        try:
            yield
        finally:
            self._lock.release()


def _insert(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` for every row; an INSERT as multi-row VALUES statements.

    Each statement step releases and retakes the GIL: on a busy 2-core VM,
    with task threads holding it, retaking cost about 25 µs per row with
    ``executemany``. One INSERT of many rows is one step.
    """
    head, values, tail = sql.partition(" VALUES ")
    if not values or not sql.lstrip().upper().startswith("INSERT") or len(rows) == 1:
        db.executemany(sql, rows)
        return
    width = len(rows[0])
    per = max(1, _MAX_VARIABLES // width)
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        db.execute(
            f"{head} VALUES {', '.join([tail] * len(chunk))}",
            [value for row in chunk for value in row],
        )


class _Drain:
    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def run(self) -> None:
        self._store.drain()


class _Transaction:
    """``with store.transaction() as db:``: reads and writes that must not interleave."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        if not store._lock.acquire(timeout=COMMIT_TIMEOUT):
            raise JournalError(f"the journal {store.path!r} stayed busy")
        try:
            store._drain_locked()  # what was posted before comes first
            store._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            store._lock.release()
            raise
        return store._db

    def __exit__(self, kind: object, exc: object, _tb: object) -> None:
        store = self._store
        try:
            store._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            store._lock.release()


# -- leases ------------------------------------------------------------------------


def holder() -> tuple[int, str, str | None]:
    """This process: pid, host, and its start time (telling a reused pid apart)."""
    pid = os.getpid()
    return pid, socket.gethostname(), process_start(pid)


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19] if len(fields) > 19 else None


def is_alive(pid: int, host: str, start: str | None) -> bool:
    """Is the lease holder still there? Another host's holder is taken as alive."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or process_start(pid) == start
