"""The engine's own process tier: :class:`ProcessTier`, which can kill what it runs.

A ``concurrent.futures.ProcessPoolExecutor`` cannot stop a running call: a
task stuck in ``time.sleep(1000)`` holds its worker forever. ``ProcessTier``
runs attempts on a ``pebble.ProcessPool`` instead (pebble: a well-kept pool
whose futures, cancelled while running, terminate their worker: SIGTERM,
then SIGKILL after ``KILL_GRACE`` seconds, and the pool starts a new one).
Everything else is the process tier's (``_tier_process.py``): function, ctx
and result pickled by us, ``is_active()`` from a flag in shared memory.

- Abandoning an attempt (its timeout, the job's end) lowers its flag; a
  queued attempt is taken out. ``kill_after`` seconds later, an attempt
  whose code still runs is killed (``Attempt.kill``): its worker process
  ends, a new one takes its place, the pool stays usable.
- A worker that dies on its own (``os._exit``, a segfault) makes that
  attempt raise ``pebble.ProcessExpired``: an EXCEPTION, retried like any.

``executor="processes"`` (the job's, or a task's) uses one default
``ProcessTier`` of the engine's, started on first use and shut down once no
job has used it for ``IDLE_TIMEOUT`` seconds, and at interpreter exit. A
``ProcessTier`` you make is yours to ``close()`` (or use ``with``).
"""

from __future__ import annotations

import atexit
import os
import threading
from types import TracebackType
from typing import Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._pool import shared_pool
from daguerreo_actors._tier_process import ProcessPoolTier, _SlotHandle, run_in_process

#: Seconds between SIGTERM and SIGKILL when a worker is killed.
KILL_GRACE = 1.0
#: Seconds the default tier stays up with no job using it.
IDLE_TIMEOUT = 5.0


class ProcessTier:
    """A pool of worker processes whose stuck attempts can be killed.

    Pass it as ``run(..., executor=ProcessTier())`` or ``Task(executor=...)``;
    ``max_workers`` defaults to the number of CPUs. Close it when done
    (``close()``, or ``with ProcessTier() as tier:``).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            type(max_workers) is bool or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be None or an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._pool: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<ProcessTier max_workers={self.max_workers}>"

    def __enter__(self) -> ProcessTier:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def pool(self) -> Any:
        """The pebble pool, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this ProcessTier is closed")
            if self._pool is None:
                import pebble

                # pebble waits this long between SIGTERM and SIGKILL.
                from pebble.common.types import CONSTS

                CONSTS.term_timeout = KILL_GRACE
                self._pool = pebble.ProcessPool(max_workers=self.max_workers)
            return self._pool

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers (running attempts are killed); the tier cannot be used again."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        _stop(pool, wait)

    def stop_idle(self) -> None:
        """Stop the workers now; the next attempt starts new ones."""
        with self._lock:
            pool, self._pool = self._pool, None
        _stop(pool, True)


def _stop(pool: Any, wait: bool) -> None:
    if pool is None:
        return
    pool.stop()
    if wait:
        pool.join(timeout=10)


class _KillHandle(_SlotHandle):
    """Lowers the flag on abandon (a queued attempt is dropped); kills the worker on ``kill``."""

    __slots__ = ()

    def cancel(self) -> None:
        self._tier.lower(self._attempt)
        future = self.future
        if future is not None and not future.running():
            future.cancel()  # not started: dropped from the queue

    def kill(self) -> None:
        future = self.future
        if future is not None:
            future.cancel()  # running: pebble terminates the worker


class PebbleTier(ProcessPoolTier):
    """One job's view of a :class:`ProcessTier` (its own shared-memory flags)."""

    def __init__(self, tier: ProcessTier, nodes: int, default: bool = False) -> None:
        super().__init__(None, nodes)
        self._tier = tier
        self._default = default

    def _handle(self, attempt: Attempt) -> _SlotHandle:
        return _KillHandle(self, attempt)

    def _submit(self, payload: bytes, memory: str, node: int, number: int, task: str) -> Any:
        return self._tier.pool().schedule(run_in_process, (payload, memory, node, number, task))

    def close(self) -> None:
        super().close()
        if self._default:
            _release_default()


# -- the default tier of executor="processes" ----------------------------------------

_default_lock = threading.Lock()
_default: ProcessTier | None = None
_users = 0
_idle_timer: Any = None  # a supervisor timer


def default_tier(nodes: int) -> PebbleTier:
    """A job's view of the engine's default ProcessTier (counted until the job closes it)."""
    global _default, _users, _idle_timer
    with _default_lock:
        if _default is None:
            _default = ProcessTier()
        _users += 1
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
        return PebbleTier(_default, nodes, default=True)


def _release_default() -> None:
    global _users, _idle_timer
    with _default_lock:
        _users -= 1
        if _users == 0 and _default is not None:
            from daguerreo_actors._clock import REAL_CLOCK, real_monotonic

            group = REAL_CLOCK.timers(lambda _reason: None)
            # Stopping joins the workers: never on the supervisor's thread.
            _idle_timer = group.call_at(
                real_monotonic() + IDLE_TIMEOUT, lambda: shared_pool().execute(_StopIfIdle())
            )


class _StopIfIdle:
    def run(self) -> None:
        global _idle_timer
        with _default_lock:
            _idle_timer = None
            tier = _default if _users == 0 else None
        if tier is not None:
            tier.stop_idle()


def retire_idle() -> None:
    """Stop the default tier's workers now if no job uses it (leak checks)."""
    global _idle_timer
    with _default_lock:
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
        tier = _default if _users == 0 else None
    if tier is not None:
        tier.stop_idle()


@atexit.register
def _close_default() -> None:
    tier = _default
    if tier is not None:
        tier.close(wait=False)
