"""The one time source: every clock read and every timer of a job goes through here.

A job reads time from its :class:`Clock`: the monotonic time of attempt
starts, deadlines and durations, the wall time of its events and log
entries, and the timers of its deadlines (task, job) through
:meth:`Clock.call_at`. No other module of the engine reads the system
clock; a test greps for it.

:data:`REAL_CLOCK` is the default: system time, and timers kept by the
process-wide supervisor actor (``_supervisor.py``), which wakes exactly at
the next due timer of any job. A virtual clock for tests plugs in here.

Waits of the caller (``Job.get(timeout=)``, ``wait_for_listeners``) are not
the job's time: they always run in real time, through :func:`real_monotonic`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A pending call; ``cancel`` makes sure it never runs."""

    def cancel(self) -> None: ...


class TimerGroup(Protocol):
    """The timers of one job, dropped together when the job ends."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...

    def close(self) -> None: ...


class Clock(Protocol):
    """What a job reads time from."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, durations)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (timestamps of events and logs)."""
        ...

    def timers(self, lost: Callable[[str], None]) -> TimerGroup:
        """A group of timers for one job.

        ``lost(reason)`` is called (from any thread) if the group's timers
        can no longer fire, e.g. the supervisor was stopped from outside.
        """
        ...


class RealClock:
    """System time; timers on the shared supervisor."""

    __slots__ = ()

    # The C functions themselves: read on every start and report, a Python
    # method around them cost a call each.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def timers(self, lost: Callable[[str], None]) -> TimerGroup:
        from daguerreo_actors._supervisor import SupervisedTimers

        return SupervisedTimers(lost)


#: The clock of every job that is not given another.
REAL_CLOCK = RealClock()


def real_monotonic() -> float:
    """Real monotonic seconds, for waits of the caller and of the supervisor."""
    return time.monotonic()


def real_time() -> float:
    """Real wall-clock seconds since the epoch."""
    return time.time()


# Job ids: 128 random bits as 32 hex digits, like uuid4().hex, from a
# generator seeded once from the OS (reseeded in a forked child): uuid4
# reads os.urandom each time, a syscall that cost 2 to 45 µs here.
_ids = random.Random(os.urandom(32))


def new_job_id() -> str:
    """A new job id: 32 random hex digits."""
    return f"{_ids.getrandbits(128):032x}"


def _reseed_after_fork() -> None:
    _ids.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed_after_fork)
