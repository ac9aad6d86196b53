"""The Supervisor: owns retries and timeouts, and tells the JobActor what to do.

One per job, a pykka ThreadingActor on a daemon thread, kept off the
success path: a task that returns normally never involves it.

Messages in:

- ``AttemptRaised(node, attempt, exception)`` from a TaskActor. The
  supervisor applies the retry policy (``max_retries + 1`` attempts in all,
  the task's value overriding the job's) and answers the JobActor with
  ``RetryDecision``.
- ``ArmDeadline(node, attempt, deadline)`` from the JobActor, for each
  attempt of a task that has a timeout.

Timers without polling: the supervisor's inbox is a queue whose ``get``
blocks only until the earliest deadline (the job's, or the first in a heap
of attempt deadlines), then hands the actor loop a synthetic ``_Wake``
message. Passed deadlines become ``DeadlinePassed(node, attempt, retry)``
or ``JobDeadlinePassed``. The supervisor does not know whether an attempt
already finished (that would put it on the success path); the JobActor
ignores deadlines of attempts that are no longer running.
"""

from __future__ import annotations

import dataclasses
import heapq
import queue
import time
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, cast

import pykka

from daguerreo_actors._messages import (
    ArmDeadline,
    AttemptRaised,
    DeadlinePassed,
    InternalFailure,
    JobDeadlinePassed,
    RetryDecision,
)
from daguerreo_actors._scheduler import retry_allowed


@dataclasses.dataclass(frozen=True, slots=True)
class _Wake:
    """The synthetic message of a passed deadline."""


class _Envelope(NamedTuple):
    # The two attributes pykka's actor loop reads from an envelope.
    message: Any
    reply_to: None = None


_WAKE = _Envelope(_Wake())

# Far below threading.TIMEOUT_MAX and any time_t limit.
_MAX_WAIT = 3600.0


class _TimerInbox:
    """An actor inbox whose ``get`` returns ``_WAKE`` at ``deadline``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.deadline: float | None = None

    def put(self, envelope: Any, /) -> None:
        self._queue.put(envelope)

    def get(self) -> Any:
        deadline = self.deadline
        if deadline is None:
            return self._queue.get()
        remaining = deadline - time.monotonic()
        try:
            # Queued messages first, even past the deadline: pykka drains
            # the inbox with ``while not empty(): get()`` when stopping.
            if remaining <= 0:
                return self._queue.get_nowait()
            # Capped: a wake-up with nothing due just re-arms.
            return self._queue.get(timeout=min(remaining, _MAX_WAIT))
        except queue.Empty:
            return _WAKE

    def empty(self) -> bool:
        return self._queue.empty()


class Supervisor(pykka.ThreadingActor):
    """Retry decisions and deadlines of one job; see the module docstring."""

    use_daemon_thread: ClassVar[bool] = True

    def __init__(
        self,
        job_ref: pykka.ActorRef[Any],
        max_retries: Sequence[int],
        job_deadline: float | None,
    ) -> None:
        super().__init__()
        self._job_ref = job_ref
        self._max_retries = max_retries
        self._job_deadline = job_deadline
        self._deadlines: list[tuple[float, int, int]] = []
        self._inbox = cast(_TimerInbox, self.actor_inbox)
        self._inbox.deadline = job_deadline

    @staticmethod
    def _create_actor_inbox() -> _TimerInbox:
        return _TimerInbox()

    def on_receive(self, message: Any) -> None:
        try:
            if type(message) is AttemptRaised:
                retry = retry_allowed(message.attempt, self._max_retries[message.node])
                self._tell(RetryDecision(message.node, message.attempt, message.exception, retry))
            elif type(message) is ArmDeadline:
                heapq.heappush(self._deadlines, (message.deadline, message.node, message.attempt))
            elif type(message) is _Wake:
                self._expire()
            else:
                raise TypeError(f"unexpected message {message!r}")
            self._rearm()
        except BaseException as exc:  # noqa: BLE001 - report, never die silently
            self._tell(InternalFailure("supervisor", exc))

    def _expire(self) -> None:
        now = time.monotonic()
        if self._job_deadline is not None and now >= self._job_deadline:
            self._job_deadline = None
            self._tell(JobDeadlinePassed())
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, node, attempt = heapq.heappop(deadlines)
            retry = retry_allowed(attempt, self._max_retries[node])
            self._tell(DeadlinePassed(node, attempt, retry))

    def _rearm(self) -> None:
        deadline = self._job_deadline
        if self._deadlines:
            first = self._deadlines[0][0]
            deadline = first if deadline is None else min(deadline, first)
        self._inbox.deadline = deadline

    def _tell(self, message: Any) -> None:
        try:
            self._job_ref.tell(message)
        except pykka.ActorDeadError:
            # The job has ended; nothing is left to supervise.
            self.stop()
