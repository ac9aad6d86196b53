"""The log writer: the one thread that hands the engine's entries to structlog.

structlog's processors and renderers are the application's code: one that
is slow (rich rendering a 200,000-character traceback took 86 s) or blocks
must not stall a job. So the engine never calls structlog on a job's path:
it puts each entry (a logger, a level, an event name and plain fields) in a
queue, and this thread makes the structlog calls, in order, in batches (at most
``FLUSH_INTERVAL`` seconds late). The thread starts with the first entry and
exits after ``IDLE_TIMEOUT`` seconds with nothing to write, like the pool.

The queue is bounded (:data:`QUEUE_LIMIT` entries): behind a blocked
processor, newer entries are dropped and counted, and the count is logged
(warning ``log_entries_dropped``) once the writer catches up. At
interpreter exit the queue is flushed (for up to ``EXIT_FLUSH`` seconds), so
a script that ends right after ``job.get()`` keeps its last entries.
:func:`flush` waits until everything queued so far is written
(``Job.wait_for_listeners`` uses it).

A processor that raises drops that entry only; the first failure of each
job is reported as a RuntimeWarning.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._text import cut, safe_repr

#: Entries waiting to be written before newer ones are dropped.
QUEUE_LIMIT = 100_000
#: Seconds the writer thread waits for work before it exits.
IDLE_TIMEOUT = 1.0
#: Seconds the writer lets entries gather before it writes them.
FLUSH_INTERVAL = 0.02
#: Entries that make the writer write at once.
BATCH = 512
#: Seconds the interpreter's exit waits for the queue to be written.
EXIT_FLUSH = 2.0

Prepare = Callable[[dict[str, Any]], None]
Entry = tuple[Any, int, str, dict[str, Any], Prepare | None]


class LogWriter:
    """A queue of entries and the thread that writes them; see the module docstring."""

    def __init__(self, limit: int = QUEUE_LIMIT, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Entry] = collections.deque()
        self._thread: threading.Thread | None = None
        self._written = 0  # entries taken and written (or dropped by a raising processor)
        self._queued = 0  # entries ever queued
        self._dropped = 0
        self._urgent = False  # a flush waits: write now
        self._retire = False
        # Bound loggers (one per job) whose failing entry was reported.
        self._warned: set[int] = set()

    def put(
        self,
        logger: Any,
        level: int,
        event: str,
        fields: dict[str, Any],
        prepare: Prepare | None = None,
    ) -> None:
        """Queue one entry; never blocks, never raises.

        ``prepare(fields)``, if given, completes the fields on the writer's
        thread (it may run user code: an exception's ``__str__``).
        """
        with self._cond:
            if len(self._queue) >= self._limit:
                self._dropped += 1
                return
            self._queue.append((logger, level, event, fields, prepare))
            self._queued += 1
            if self._thread is None:
                self._start()
            elif len(self._queue) == BATCH:
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every entry queued before this call is written; False on timeout."""
        deadline = None if timeout is None else real_monotonic() + timeout
        with self._cond:
            target = self._queued
            while self._written < target:
                if self._thread is None:
                    return False  # pragma: no cover - the writer always runs while queued
                self._urgent = True
                self._cond.notify_all()
                remaining = None if deadline is None else deadline - real_monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def retire_idle(self) -> None:
        """Make an idle writer thread exit now (leak checks)."""
        with self._cond:
            if self._thread is not None and not self._queue:
                self._retire = True
                self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _start(self) -> None:
        thread = threading.Thread(target=self._work, name="daguerreo-log", daemon=True)
        self._thread = thread
        thread.start()

    def _work(self) -> None:
        # Entries are written in batches, every FLUSH_INTERVAL (or at once
        # when BATCH are waiting or a flush waits): a wake-up per entry cost
        # a 1-task job about 170 µs on 2 cores, the writer competing for a
        # CPU with the job's own threads.
        cond = self._cond
        queue = self._queue
        idle_since = real_monotonic()
        while True:
            with cond:
                if len(queue) < BATCH and not self._urgent and not self._retire:
                    cond.wait(FLUSH_INTERVAL)
                self._urgent = False
                batch = list(queue)
                queue.clear()
                dropped, self._dropped = self._dropped, 0
                if not batch and not dropped:
                    now = real_monotonic()
                    if self._retire or now - idle_since >= self._idle_timeout:
                        self._thread = None
                        self._retire = False
                        cond.notify_all()
                        return
                    continue
            idle_since = real_monotonic()
            for entry in batch:
                self._write(entry)
            if dropped:
                self._write_drops(dropped)
            with cond:
                self._written += len(batch)
                cond.notify_all()

    def _write(self, entry: Entry) -> None:
        logger, level, event, fields, prepare = entry
        try:
            if prepare is not None:
                prepare(fields)
            logger.log(level, event, **fields)
        except BaseException as exc:  # noqa: BLE001 - the application's processors
            if id(logger) in self._warned:
                return
            if len(self._warned) > 1000:
                self._warned.clear()
            self._warned.add(id(logger))
            try:
                warnings.warn(
                    f"daguerreo_actors: logging an entry raised {cut(safe_repr(exc), 200)}; "
                    "entries that fail are dropped",
                    RuntimeWarning,
                    stacklevel=1,
                )
            except BaseException:  # noqa: BLE001 - warnings configured as errors
                pass

    def _write_drops(self, dropped: int) -> None:
        import structlog

        from daguerreo_actors._logging import LOGGER_NAME

        self._write(
            (
                structlog.get_logger(LOGGER_NAME),
                logging.WARNING,
                "log_entries_dropped",
                {"dropped": dropped, "queue_limit": self._limit},
                None,
            )
        )


_writer = LogWriter()


def writer() -> LogWriter:
    """The process-wide writer."""
    return _writer


def flush(timeout: float | None = None) -> bool:
    """Wait until every engine log entry queued so far is written."""
    return _writer.flush(timeout)


def _flush_at_exit() -> None:
    _writer.flush(EXIT_FLUSH)


atexit.register(_flush_at_exit)


def _forget_after_fork() -> None:
    global _writer
    _writer = LogWriter()


os.register_at_fork(after_in_child=_forget_after_fork)
