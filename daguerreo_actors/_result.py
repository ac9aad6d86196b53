"""What a job ends with: the :class:`JobResult`, and the :class:`Failure` record.

A :class:`Failure` is made in one place, the scheduler core, when a task's
failure makes the job FAILED (or when the job fails for a reason of its
own, an internal error, with ``task`` None). The JobActor copies it into
the ``JobResult``; nothing else describes a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daguerreo_actors._states import JobState, TaskState


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """Why a job failed.

    ``task`` names the task that failed (None when the job failed for a
    reason of its own), ``reason`` how (EXCEPTION, TIMED_OUT or
    INVALID_RESULT; None without a task), ``exception`` the very exception
    the task's last attempt raised (None if it timed out or returned a bad
    value), ``invalid_result`` the non-mapping it returned.
    """

    task: str | None
    reason: TaskState | None
    exception: BaseException | None
    invalid_result: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class KeyConflict:
    """Two completed tasks, neither depending on the other, wrote the same ctx key.

    ``first_task`` wrote it first; ``second_task``'s value is the one in the
    ctx (with ``on_conflict="warn"``). Which task comes second depended on
    thread timing: make one depend on the other, or use different keys.
    """

    key: Any
    first_task: str
    second_task: str


@dataclasses.dataclass(frozen=True, slots=True)
class Straggler:
    """An attempt abandoned (timed out, or its job ended) whose code still runs.

    ``overrun`` is the seconds since it was abandoned (its deadline, or the
    job's end).
    """

    task: str
    attempt: int
    overrun: float


@dataclasses.dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of a job.

    ``ctx`` is the initial ctx updated with the outputs of the tasks that
    completed, in completion order. The four failure fields are None unless
    ``state`` is FAILED: ``failed_task`` names the task that failed the job,
    ``failure_reason`` says how (EXCEPTION, TIMED_OUT or INVALID_RESULT),
    ``exception`` is the very exception its last attempt raised (None if
    that attempt timed out), ``invalid_result`` the non-mapping it returned.
    ``conflicts`` lists every :class:`KeyConflict`, in the order found;
    ``failures`` every task that ended FAILED or INVALID_RESULT
    (``continue_on_failure`` ones included), as a :class:`Failure`, in
    failure order.
    """

    state: JobState
    ctx: dict[Any, Any]
    task_states: Mapping[str, TaskState]
    attempts: Mapping[str, int]
    failed_task: str | None = None
    failure_reason: TaskState | None = None
    exception: BaseException | None = None
    invalid_result: Any = None
    conflicts: tuple[KeyConflict, ...] = ()
    failures: tuple[Failure, ...] = ()
    #: A resumed job: the id of the job it continued (``resume``).
    resumed_from: str | None = None

    @property
    def ok(self) -> bool:
        """True if the job COMPLETED."""
        return self.state is JobState.COMPLETED
