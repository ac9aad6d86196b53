"""The shared pool of daemon threads that TaskActors run on.

A pykka ThreadingActor owns an OS thread; starting one costs 200 µs or more,
which would dominate a fine-grained job. TaskActors instead are scheduled on
this pool, as Akka and Erlang schedule many actors on few threads: the pool
runs an actor's mailbox, the actor handles its messages one at a time.

The pool is cached, not fixed: a submission with no idle thread starts a new
one. Concurrency is bounded where it belongs, in each job's ready queue
(``max_concurrency``), never by blocking inside the pool; and a thread stuck
in an abandoned attempt (a task that ignores ``is_active()`` after a
timeout) must not take a slot from the work that replaces it. A thread idle
for ``idle_timeout`` seconds exits, so an idle process holds no threads of
ours for longer than that.

Bookkeeping: ``_idle`` counts waiting threads not yet promised an item. A
submission that finds ``_idle > 0`` takes one promise and enqueues; a thread
whose wait times out may exit only by giving back an unpromised slot
(``_idle > 0``), so every queued item keeps a waiting thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from typing import Protocol

from daguerreo_actors._logging import log_outside

#: Seconds an idle pool thread waits for work before it exits.
IDLE_TIMEOUT = 1.0


class Runnable(Protocol):
    def run(self) -> Runnable | None:
        """Do the work; may return the next item for this same thread."""


class WorkerPool:
    """A cached pool of daemon threads running :class:`Runnable` items."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT, name: str = "daguerreo-worker"):
        self._idle_timeout = idle_timeout
        self._name = name
        self._queue: queue.SimpleQueue[Runnable] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._counter = itertools.count(1)

    @property
    def thread_count(self) -> int:
        """Threads alive in the pool (busy or idle)."""
        return self._threads

    def execute(self, item: Runnable) -> None:
        """Run ``item.run()`` on a pool thread, starting one if none is idle."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._queue.put(item)
                return
            self._threads += 1
        thread = threading.Thread(
            target=self._work,
            args=(item,),
            name=f"{self._name}-{next(self._counter)}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def retire_idle(self) -> int:
        """Make every idle thread exit now; returns how many were told to.

        For leak checks (tests, benchmarks) that want the true baseline
        without waiting ``idle_timeout``.
        """
        with self._lock:
            count = self._idle
            self._idle = 0
        for _ in range(count):
            self._queue.put(_RETIRE)
        return count

    def _work(self, item: Runnable | None) -> None:
        lock = self._lock
        get = self._queue.get
        timeout = self._idle_timeout
        while True:
            while item is not None:
                try:
                    item = item.run()
                except BaseException as exc:  # noqa: BLE001  # pragma: no cover - items catch all
                    log_outside(logging.ERROR, "pool_item_failed", exc=exc)
                    item = None
            with lock:
                self._idle += 1
            while item is None:
                try:
                    item = get(timeout=timeout)
                    if item is _RETIRE:
                        with lock:
                            self._threads -= 1
                        return
                except queue.Empty:
                    with lock:
                        if self._idle > 0:
                            self._idle -= 1
                            self._threads -= 1
                            return


class _Retire:
    def run(self) -> None:  # pragma: no cover - never run, only recognised
        return None


_RETIRE = _Retire()

_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def shared_pool() -> WorkerPool:
    """The process-wide pool, created on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WorkerPool()
    return _pool


def _forget_after_fork() -> None:
    # A forked child (a ProcessPoolExecutor worker, say) inherits the pool's
    # bookkeeping but none of its threads: start over, or work queued there
    # would wait forever for an "idle" thread that does not exist.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
