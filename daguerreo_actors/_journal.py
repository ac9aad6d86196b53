"""The journal: a job's durable record, for ``resume`` after a crash and for history.

``run(tasks, journal="pipeline.db")`` records the job in an SQLite file
(``_journal_store.py``: schema, group commit): the job, each task's
definition fingerprint (``_fingerprint.py``), every transition, and each
completed task's output, serialized (pickle by default, or the
``serializer=`` given: any object with ``dumps`` and ``loads``).

The message flow, per job (a :class:`JobJournal`):

- ``run()`` (the caller's thread) writes the job's row, its tasks and its
  lease, and commits them before the job starts.
- A task's thread serializes its output (user code: an error names the
  key and fails that attempt), then, once the attempt's fate is settled,
  queues the output row (which is its RUNNING -> COMPLETED transition)
  with its report (``_commit.py``). A dependent's TaskActor waits, before
  the attempt begins, until the batches holding its inputs are committed
  (``inputs_durable``, committing them itself if nobody is): so no
  dependent starts before its input is durable, and a crash never leaves a
  dependent's effects recorded without its input.
- The JobActor's outbox posts every other transition; the writer batches
  them into transactions on a pool thread (the JobActor never waits).
- The job's end posts its state and drops its lease; a journal the job
  opened itself (from a path) is closed then.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daguerreo_actors._errors import JournalError, SerializationError
from daguerreo_actors._journal_store import ENTRIES, Statement, Store, holder, is_alive
from daguerreo_actors._journal_store import INSERT_TRANSITIONS as _INSERT_TRANSITIONS
from daguerreo_actors._pool import shared_pool
from daguerreo_actors._serializer import Serializer
from daguerreo_actors._text import cut, safe_repr

_INSERT_OUTPUT = (
    "INSERT OR IGNORE INTO outputs"
    " (job_id, task, attempt, output, fingerprint, restored_from, reads, ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_END_JOB = "UPDATE jobs SET state = ?, ended = ? WHERE job_id = ?"
_DROP_LEASE = "DELETE FROM leases WHERE job_id = ? AND token = ?"


@dataclasses.dataclass(frozen=True, slots=True)
class JournalJob:
    """One job in a journal: ``Journal.jobs()`` and ``daguerreo-actors history``."""

    job_id: str
    state: str
    started: float
    ended: float | None
    resumed_from: str | None
    resumed_by: str | None
    tasks: int
    completed: int

    @property
    def wall_time(self) -> float | None:
        return None if self.ended is None else max(0.0, self.ended - self.started)


class Journal:
    """An SQLite journal of jobs; see the module docstring.

    Pass it (or a path) as ``run(..., journal=)`` and ``resume(...,
    journal=)``. One you open is yours to ``close()`` (or use ``with``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._store = Store(self.path)

    def __repr__(self) -> str:
        return f"<Journal {self.path!r}>"

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write what is queued and close the file."""
        self._store.close()

    def flush(self) -> None:
        """Write what is queued now."""
        self._store.drain()

    def jobs(self) -> list[JournalJob]:
        """Every job recorded, oldest first."""
        rows = self._store.query(
            "SELECT j.job_id, j.state, j.started, j.ended, j.resumed_from, j.resumed_by, j.tasks,"
            " (SELECT COUNT(*) FROM outputs o WHERE o.job_id = j.job_id)"
            " FROM jobs j ORDER BY j.started, j.rowid"
        )
        return [JournalJob(*row) for row in rows]

    def forget(self, task: str | None = None, job_id: str | None = None) -> int:
        """Forget recorded outputs (of one task, one job, or all): they are run again.

        Returns how many were forgotten.
        """
        where, params = [], []
        if task is not None:
            where.append("task = ?")
            params.append(task)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        sql = "DELETE FROM outputs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._store.transaction() as db:
            return db.execute(sql, params).rowcount

    # -- used by run() and resume() ------------------------------------------------

    def find_job(self, job_id: str | None) -> JournalJob:
        """The job named (an id or a prefix), or the latest that did not complete."""
        jobs = self.jobs()
        if job_id is not None:
            found = [j for j in jobs if j.job_id.startswith(job_id)]
            if len(found) != 1:
                which = "no job" if not found else f"{len(found)} jobs"
                raise JournalError(f"{which} matching {job_id!r} in the journal {self.path!r}")
            return found[0]
        open_jobs = [j for j in jobs if j.state != "completed" and j.resumed_by is None]
        if not open_jobs:
            raise JournalError(f"no job to resume in the journal {self.path!r}")
        return open_jobs[-1]

    def recorded(self, job_id: str) -> list[tuple[str, Any, str, Any]]:
        """The job's outputs, in merge order: (task, serialized output, fingerprint, reads)."""
        rows = self._store.query(
            "SELECT task, output, fingerprint, reads FROM outputs WHERE job_id = ? ORDER BY seq",
            (job_id,),
        )
        return [(str(t), o, str(f), r) for t, o, f, r in rows]

    def dependencies(self, job_id: str) -> dict[str, tuple[str, str]]:
        """Each recorded task's (fingerprint, dependencies as JSON)."""
        rows = self._store.query(
            "SELECT task, fingerprint, dependencies FROM tasks WHERE job_id = ?", (job_id,)
        )
        return {str(t): (str(f), str(d)) for t, f, d in rows}

    def transitions(self, job_id: str) -> list[tuple[Any, ...]]:
        """The job's transitions, in time order (task, old, new, attempt, ts, reason, error)."""
        from daguerreo_actors._journal_read import job_transitions

        return job_transitions(self._store.query, job_id)

    def open_job(
        self,
        job_id: str,
        *,
        started: float,
        names: Sequence[str],
        fingerprints: Sequence[str],
        dependencies: Sequence[Sequence[str]],
        fingerprint: str,
        options: Mapping[str, Any],
        serializer: Serializer,
        owned: bool,
        resumed: str | None = None,
        restored: Sequence[tuple[str, bytes, bytes | None]] = (),
        restored_rows: Sequence[tuple[str, str]] = (),
    ) -> JobJournal:
        """Record a new job (and what it restores: outputs, and ``restored_rows``, the
        children of maps restored whole) and take its leases, in one transaction."""
        pid, host, start = holder()
        token = uuid.uuid4().hex
        with self._store.transaction() as db:
            leased = [job_id] if resumed is None else [resumed, job_id]
            for leased_id in leased:
                row = db.execute(
                    "SELECT pid, host, process_start FROM leases WHERE job_id = ?", (leased_id,)
                ).fetchone()
                if row is not None and is_alive(*row):
                    raise JournalError(
                        f"job {leased_id} in {self.path!r} is driven by another live process "
                        f"(pid {row[0]} on {row[1]}); resume it once that process is gone"
                    )
                db.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                    (leased_id, pid, host, start, token),
                )
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, NULL, ?, NULL, 'running', ?, ?, ?, ?, ?)",
                (job_id, resumed, started, fingerprint, len(names), json.dumps(options), pid, host),
            )
            db.executemany(
                "INSERT INTO tasks VALUES (?, ?, ?, ?)",
                [
                    (job_id, name, fp, json.dumps(sorted(deps)))
                    for name, fp, deps in zip(names, fingerprints, dependencies, strict=True)
                ],
            )
            if resumed is not None:
                db.execute("UPDATE jobs SET resumed_by = ? WHERE job_id = ?", (job_id, resumed))
            position = {name: i for i, name in enumerate(names)}
            fp = [fingerprints[_node(position, task)] for task, _blob, _reads in restored]
            db.executemany(
                _INSERT_OUTPUT,
                [
                    (job_id, task, 0, blob, fp[i], resumed, reads, None)
                    for i, (task, blob, reads) in enumerate(restored)
                ],
            )
            if restored_rows:
                rows = [
                    [t, "unscheduled", st, 0, started, "restored", None] for t, st in restored_rows
                ]
                db.execute(_INSERT_TRANSITIONS, (job_id, json.dumps(rows)))
        side = JobJournal(self, job_id, names, fingerprints, serializer, owned, leased, token)
        side._dependencies = [[position[dep] for dep in deps] for deps in dependencies]
        side.resumed_from = resumed
        return side


class JobJournal:
    """One job's side of the journal (see the module docstring)."""

    def __init__(
        self,
        journal: Journal,
        job_id: str,
        names: Sequence[str],
        fingerprints: Sequence[str],
        serializer: Serializer,
        owned: bool,
        leased: Sequence[str],
        token: str,
    ) -> None:
        self.journal = journal
        self.job_id = job_id
        self._store = journal._store
        self._names = names
        self._fingerprints = list(fingerprints)
        self._serializer = serializer
        self._owned = owned
        self._leased = tuple(leased)
        self._token = token
        #: Set once the job's end is written (and an owned journal closed).
        self.closed = threading.Event()
        #: The job this one resumed, if any.
        self.resumed_from: str | None = None
        self.ending = False
        self._end_lock = threading.Lock()
        self._after_end: list[Callable[[], None]] = []
        # Per node: its dependencies, and the batch that holds its output.
        self._dependencies: list[list[int]] = [[] for _ in names]
        self._batches = [-1] * len(names)
        self._children: dict[int, tuple[int, int]] = {}  # mapped task: (first child, count)
        #: A resumed job's recorded outputs of mapped tasks' children, by name.
        self.restored_children: Mapping[str, Mapping[Any, Any]] = {}

    def encode(self, task: str, output: Mapping[Any, Any]) -> bytes | str:
        """Serialize an output, on the task's thread; SerializationError names the key."""
        serializer = self._serializer
        try:
            blob = serializer.dumps(dict(output))
            if not isinstance(blob, (bytes, str)):
                raise SerializationError(
                    f"task {task!r}: the serializer's dumps returned "
                    f"{type(blob).__name__}, not bytes or str"
                )
            return blob
        except SerializationError:
            raise
        except BaseException as exc:  # noqa: BLE001 - user values and serializers
            for key, value in output.items():
                try:
                    serializer.dumps({key: value})
                except BaseException as inner:  # noqa: BLE001
                    raise SerializationError(
                        f"task {task!r}: its result key {cut(safe_repr(key), 100)} cannot be "
                        f"serialized for the journal: {type(inner).__name__}: "
                        f"{cut(safe_repr(str(inner)), 300)}"
                    ) from None
            raise SerializationError(
                f"task {task!r}: its result cannot be serialized for the journal: "
                f"{type(exc).__name__}"
            ) from None

    def encode_reads(self, task: str, tracker: Any) -> bytes | str | None:
        """What a caching task read, for the cache (``_cache_reads.py``); None: uncacheable."""
        from daguerreo_actors._cache_reads import encode_reads

        return encode_reads(self._serializer, task, tracker)

    def completed(
        self,
        node: int,
        attempt: int,
        blob: bytes | str,
        ts: float,
        reads: bytes | str | None = None,
    ) -> tuple[int, bool]:
        """Queue an output with its COMPLETED transition, in one batch (the job's lock held).

        Returns the batch's number (``wait_committed`` it before a dependent
        starts) and whether to ``schedule`` a drain once the lock is released.
        """
        task = self._names[node]
        row = (self.job_id, task, attempt, blob, self._fingerprints[node], None, reads, ts)
        batch, schedule = self._store.queue([(_INSERT_OUTPUT, row)])
        self._batches[node] = batch
        return batch, schedule

    def add_children(self, parent: int, count: int) -> None:
        """A mapped task's children: its definition, and its inputs to wait for."""
        self._fingerprints.extend([self._fingerprints[parent]] * count)
        self._dependencies.extend([self._dependencies[parent]] * count)
        self._batches.extend([-1] * count)
        self._children[parent] = (len(self._batches) - count, count)

    def map_completed(self, parent: int) -> None:
        """A mapped task completed: its output is its children's, durable in their batches."""
        first, count = self._children.pop(parent, (0, 0))  # no children: an empty sequence
        self._batches[parent] = max(self._batches[first : first + count], default=-1)

    def inputs_batch(self, node: int) -> int:
        """The batch that must be committed before ``node`` starts (-1: none)."""
        return max((self._batches[dep] for dep in self._dependencies[node]), default=-1)

    def inputs_durable(self, node: int) -> None:
        """Wait until every dependency's output is committed; JournalError if one failed."""
        for batch in sorted({self._batches[dep] for dep in self._dependencies[node]}):
            if batch >= 0:
                self._store.wait_committed(batch)

    def schedule(self) -> None:
        """Have a pool thread commit what is queued."""
        self._store.schedule()

    def wait_committed(self, batch: int) -> None:
        """Return once ``batch`` is committed (committing it here if nobody is)."""
        self._store.wait_committed(batch)

    def lookup(
        self, node: int, ctx: Mapping[Any, Any]
    ) -> str | tuple[Mapping[Any, Any], bytes, bytes, str]:
        """A recorded output of this task's definition whose reads match ``ctx``, or why not.

        Found: (output, its serialized form, its reads, the job that made it).
        """
        from daguerreo_actors._cache_reads import matches

        rows = self._store.query(
            "SELECT job_id, output, reads FROM outputs WHERE task = ? AND fingerprint = ?"
            " AND reads IS NOT NULL AND job_id != ? ORDER BY seq DESC LIMIT 8",
            (self._names[node], self._fingerprints[node], self.job_id),
        )
        if not rows:
            return "no output recorded for this definition (code, dependencies, version)"
        why = ""
        for job, blob, reads in rows:
            why = matches(self._serializer, reads, ctx) or ""
            if not why:
                output = self._serializer.loads(blob)
                if isinstance(output, Mapping):
                    return output, blob, reads, str(job)
                why = "the recorded output is not a mapping"
        return why

    def reused(
        self, node: int, blob: bytes | str, reads: bytes | str, source: str, ts: float
    ) -> None:
        """Commit a cache hit to this job (waits), so a resume restores it."""
        task = self._names[node]
        entry = [task, "ready", "completed", 0, ts, "cached", None]
        self._store.commit(
            [
                (
                    _INSERT_OUTPUT,
                    (self.job_id, task, 0, blob, self._fingerprints[node], source, reads, ts),
                ),
                (ENTRIES, (self.job_id, [entry])),
            ]
        )

    def post(self, entries: Sequence[Sequence[Any]]) -> None:
        """Queue transitions ([task, old, new, attempt, ts, reason, error]); never waits."""
        self._store.post([(ENTRIES, (self.job_id, entries))])

    def end(self, state: str, ts: float) -> None:
        """The job ended: its state, its leases dropped; then close if it is ours."""
        if self.ending:
            return
        self.ending = True
        statements: list[Statement] = [(_END_JOB, (state, ts, self.job_id))]
        statements += [(_DROP_LEASE, (job, self._token)) for job in self._leased]
        try:
            self._store.post(statements)
        finally:
            shared_pool().execute(_Close(self))  # whatever happens: get() must return

    def after_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the job's end (and all before it) is committed."""
        with self._end_lock:
            if not self.closed.is_set():
                self._after_end.append(callback)
                return
        callback()

    def _ended(self) -> None:
        with self._end_lock:
            self.closed.set()
            callbacks, self._after_end = self._after_end, []
        for callback in callbacks:
            callback()


class _Close:
    __slots__ = ("_job",)

    def __init__(self, job: JobJournal) -> None:
        self._job = job

    def run(self) -> None:
        job = self._job
        try:
            if job._owned:
                job.journal.close()
            else:
                job.journal.flush()
        finally:
            job._ended()


def _node(position: Mapping[str, int], task: str) -> int:
    """A task's node; a mapped task's child (``task[i]``) is known by its parent's."""
    node = position.get(task)
    return position[task.rsplit("[", 1)[0]] if node is None else node
