"""Attempts that outlive their welcome: deadlines, stragglers, ``kill_after``, heartbeats.

Part of the JobActor (a mixin). ``_arm`` sets a started attempt's deadline
on the job's clock (its timer tells the JobActor ``DeadlinePassed``). An
attempt *abandoned* (it timed out, its heartbeat stopped, the job ended or
stopped) while its code runs is a *straggler* until that code returns; the
commit of its late report takes it off the list (``_commit.py``: logged as
``attempt_overran``, its result discarded). Meanwhile:

- ``kill_after`` seconds past the moment it was abandoned (its deadline, or
  the job's end) the engine logs ``attempt_overrunning`` once and asks its
  tier to stop the code by force (``Attempt.kill``: a worker process is
  killed, a thread interrupted if the task asked for it, a Dask future
  cancelled with ``force``). This timer has a group of its own, alive as
  long as stragglers are, past the job's end.
- Without ``overlap``, the core keeps its slot (and its retry) until then.

A task with a ``heartbeat`` is timed out (reason ``"heartbeat"``) when its
attempt has not called ``is_active()`` for that long: a timer checks at
``last_beat + heartbeat`` and re-arms itself while the attempt beats.
``Job.stragglers()`` and ``Job.wait_stopped()`` read the list.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import ACTIVE
from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._ending import Ending
from daguerreo_actors._messages import DeadlinePassed, HeartbeatCheck, KillDue
from daguerreo_actors._result import Straggler

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._clock import TimerGroup
    from daguerreo_actors._retry import Resolved
    from daguerreo_actors._task import Task


class Overrun(Ending):
    """Stragglers, kills and heartbeats of the JobActor (see the module docstring)."""

    __slots__ = ("_kill_timers",)

    _kill_timers: TimerGroup | None
    _tasks: Sequence[Task]
    _retries: list[Resolved]
    _max_retries: list[int]
    _timeouts: list[float | None]

    def _arm(self, attempt: Attempt) -> None:
        timeout = self._timeouts[attempt.node]
        if timeout is not None:
            attempt.deadline = attempt.started_at + timeout
            self._timers.call_at(attempt.deadline, lambda: self.tell(DeadlinePassed(attempt)))

    def _give_up(self, attempt: Attempt, at: float) -> bool:
        """Abandon ``attempt`` at ``at``; a straggler if its code runs. False if it finished."""
        with self._lock:
            abandoned, handle = attempt.abandon_locked(at)
            straggling = abandoned and attempt.straggling()
            if straggling:
                self._stragglers[attempt] = None
        if not abandoned:
            return False
        if handle is not None:
            self._step("cancel", handle.cancel)
        if straggling:
            kill_after = self._tasks[attempt.node].kill_after
            if not math.isinf(kill_after):
                self._kill_group().call_at(at + kill_after, lambda: self.tell(KillDue(attempt)))
        return True

    def _free_if_stopped(self, attempt: Attempt) -> list[int]:
        """A cancelled attempt whose code is not running (never began, or returned):
        what it held is free now. A running one frees it when it returns."""
        with self._lock:
            running = attempt.straggling()
        if running:
            return []
        return self._core.code_returned(attempt.node, attempt.number) or []

    def _late_report(self, attempt: Attempt) -> None:
        """A report the core refused (the attempt was cancelled meanwhile): its code is
        done, so what it held is free."""
        self._outbox.log.late_result(attempt.task, attempt.number)
        freed = self._core.code_returned(attempt.node, attempt.number)
        if freed:
            self._carry_out(freed)

    def _carry_out(self, started: list[int]) -> None:
        raise NotImplementedError

    def _kill_group(self) -> TimerGroup:
        if self._kill_timers is None:
            self._kill_timers = self._clock.timers(lambda _reason: None)
        return self._kill_timers

    def _on_kill_due(self, message: KillDue) -> None:
        attempt = message.attempt
        with self._lock:
            straggling = attempt.straggling()
        if not straggling:
            return
        past = self._clock.monotonic() - (attempt.abandoned_at or 0.0)
        self._outbox.log.attempt_overrunning(attempt.task, attempt.number, past)
        self._step("kill", attempt.kill)

    def _stragglers_gone(self) -> None:
        """The last straggler returned: after the job's end, nothing is left to time."""
        if self._resolved and self._kill_timers is not None:
            self._kill_timers.close()
            self._kill_timers = None

    # -- heartbeats --------------------------------------------------------

    def _arm_heartbeat(self, attempt: Attempt, at: float) -> None:
        self._timers.call_at(at, lambda: self.tell(HeartbeatCheck(attempt)))

    def _on_heartbeat(self, message: HeartbeatCheck) -> None:
        attempt = message.attempt
        node = attempt.node
        if self._attempts.get(node) is not attempt or attempt.fate != ACTIVE:
            return
        heartbeat = self._tasks[node].heartbeat
        assert heartbeat is not None
        remote = getattr(attempt.handle, "beat", None)
        if remote is not None:
            # A process worker beats in shared memory (``_tier_process.py``).
            attempt.last_beat = max(attempt.last_beat, self._step("beat", remote) or 0.0)
        due = attempt.last_beat + heartbeat
        now = self._clock.monotonic()
        if now < due:
            self._arm_heartbeat(attempt, due)  # it beat meanwhile
            return
        self._time_out(attempt, at=due, reason="heartbeat")

    def _time_out(self, attempt: Attempt, *, at: float, reason: str) -> None:
        raise NotImplementedError

    # -- what the Job (and a virtual clock) asks ------------------------------

    def quiescent(self) -> bool:
        """Nothing to handle, and every running attempt returned or sleeps on the clock."""
        with self._lock:
            if self._draining or self._mailbox or self._committing:
                return False
            # Stragglers too: a timed-out attempt's code, woken by the clock,
            # must return (or sleep again) before time moves on.
            attempts = [*self._attempts.values(), *self._stragglers]
            return all(a.parked or a.returned for a in attempts)

    def stragglers(self) -> tuple[Straggler, ...]:
        """Attempts abandoned while their code runs, and still running."""
        now = self._clock.monotonic()
        with self._lock:
            attempts = list(self._stragglers)
        return tuple(
            Straggler(a.task, a.number, max(0.0, now - (a.abandoned_at or now))) for a in attempts
        )

    def progress(self) -> dict[str, object]:
        """The last progress of each running attempt that gave one (any thread)."""
        attempts = list(self._attempts.values())  # one atomic copy: no lock needed
        return {a.task: a.progress for a in attempts if a.progress is not None and a.fate == ACTIVE}

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait (real time) until every attempt's code of the job has returned."""
        deadline = None if timeout is None else real_monotonic() + timeout
        with self._stopped:
            while self._stragglers or not self._resolved:
                remaining = None if deadline is None else deadline - real_monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._stopped.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    _stopped: threading.Condition
    _draining: bool
    _mailbox: Any
