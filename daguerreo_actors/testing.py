"""Testing helpers: a virtual clock for the engine, and running one task alone.

:class:`VirtualClock` replaces the job's time: ``run(tasks, clock=clock)``
reads every task deadline, job deadline, heartbeat, ``kill_after``, retry
delay and event timestamp from it, and nothing happens until the test says
so: ``clock.advance(seconds)`` moves time on and returns only once the
engine has carried out everything that came due (timeouts fired, retries
readied and started, the started tasks running until they return or sleep
on the clock). Task code simulates work that takes time with
``clock.sleep(seconds)``. A test of "a 30 s timeout, 3 retries with
exponential backoff" runs in milliseconds. Waits of the caller
(``get(timeout=)``, ``wait_stopped(timeout=)``) stay in real time.

:func:`run_task` runs one task's function alone, with a working
``is_active`` and the engine's check of its result, for unit tests of task
code.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import immutables

from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._errors import invalid_result_message
from daguerreo_actors._task import Task
from daguerreo_actors._tier_thread import current as _current
from daguerreo_actors._validation import validate_tasks

if TYPE_CHECKING:
    from daguerreo_actors._job_actor import JobActor

__all__ = ["VirtualClock", "run_task"]

#: Real seconds ``advance`` waits at most for the engine to settle.
SETTLE_TIMEOUT = 10.0


class _Timer:
    __slots__ = ("callback", "cancelled", "group")

    def __init__(self, callback: Callable[[], None], group: _Timers) -> None:
        self.callback = callback
        self.group = group
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Timers:
    __slots__ = ("_clock", "closed")

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.closed = False

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback, self)
        self._clock._push(when, timer)
        return timer

    def close(self) -> None:
        self.closed = True


class _Sleeper:
    """A task sleeping on the clock; waking it marks its attempt busy at once."""

    __slots__ = ("attempt", "event")

    def __init__(self, attempt: Any) -> None:
        self.attempt = attempt
        self.event = threading.Event()

    def wake(self) -> None:
        if self.attempt is not None:
            self.attempt.parked = False  # busy from now: advance waits for it
        self.event.set()


class VirtualClock:
    """A clock that moves only when told to; see the module docstring.

    ``start`` is the monotonic reading it starts at, ``epoch`` the wall-clock
    time (seconds since the epoch) that reading stands for.
    """

    #: The engine asks: run this clock's jobs so that advance() can tell when they settle.
    virtual = True

    def __init__(self, start: float = 0.0, *, epoch: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._epoch = float(epoch) - float(start)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Timer | _Sleeper]] = []
        self._seq = itertools.count()
        self._jobs: weakref.WeakSet[JobActor] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:g}>"

    # -- the Clock protocol (what a job reads) ---------------------------------

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    def timers(self, lost: Callable[[str], None]) -> _Timers:
        return _Timers(self)

    def attach(self, job: JobActor) -> None:
        """A job runs on this clock (the engine calls this)."""
        self._jobs.add(job)

    # -- what a test does --------------------------------------------------------

    def now(self) -> float:
        """The clock's current reading, in seconds."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """In task code: wait until the clock has moved ``seconds`` on (advance does it)."""
        attempt = getattr(_current, "attempt", None)
        sleeper = _Sleeper(attempt)
        if attempt is not None:
            attempt.parked = True
        with self._cond:
            self._push_locked(self._now + max(0.0, seconds), sleeper)
        try:
            sleeper.event.wait()
        finally:
            if attempt is not None:
                attempt.parked = False

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, carrying out everything that comes due, in order."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        target = self._now + seconds
        while True:
            self._settle()
            with self._cond:
                due = self._pop_due(target)
                if not due:
                    break
            for item in due:
                if isinstance(item, _Sleeper):
                    item.wake()
                elif not item.cancelled and not item.group.closed:
                    item.callback()
        with self._cond:
            self._now = target
        self._settle()

    # -- internals ------------------------------------------------------------------

    def _push(self, when: float, item: _Timer | _Sleeper) -> None:
        with self._cond:
            self._push_locked(when, item)

    def _push_locked(self, when: float, item: _Timer | _Sleeper) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), item))

    def _pop_due(self, target: float) -> list[_Timer | _Sleeper]:
        """Everything due at the earliest moment up to ``target``; the clock moves there."""
        heap = self._heap
        if not heap or heap[0][0] > target:
            return []
        when = heap[0][0]
        self._now = max(self._now, when)
        due = []
        while heap and heap[0][0] <= when:
            due.append(heapq.heappop(heap)[2])
        return due

    def _settle(self) -> None:
        """Wait (real time, bounded) until every job on this clock is quiet."""
        deadline = real_monotonic() + SETTLE_TIMEOUT
        quiet_once = False
        while real_monotonic() < deadline:
            if all(job.quiescent() for job in list(self._jobs)):
                # Quiet twice in a row, the other threads given a turn in
                # between: a hand-off in flight shows as busy on one look.
                if quiet_once:
                    return
                quiet_once = True
                time.sleep(0)
            else:
                quiet_once = False
                time.sleep(0.0001)


def run_task(
    task: Task | Mapping[str, Any],
    ctx: Mapping[Any, Any] | None = None,
    *,
    timeout: float | None = None,
) -> dict[Any, Any]:
    """Run one task's function alone; return its output as a dict.

    ``is_active()`` turns False ``timeout`` real seconds in (never without
    one); an ``async def`` task runs in a fresh event loop. A result that is
    not a mapping raises TypeError with the engine's message; what the
    function raises propagates.
    """
    [checked] = validate_tasks([task])
    deadline = None if timeout is None else real_monotonic() + timeout

    def is_active(progress: object = None) -> bool:
        return deadline is None or real_monotonic() < deadline

    value = checked.fn(immutables.Map(dict(ctx or {})), is_active)
    if inspect.isawaitable(value):
        value = asyncio.run(_wait(value))
    if not isinstance(value, Mapping):
        raise TypeError(invalid_result_message(checked.name, value, with_value=True))
    return dict(value)


async def _wait(value: Any) -> Any:
    return await value
