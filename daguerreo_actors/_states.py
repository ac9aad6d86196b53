"""Job and task states, and the one table of allowed task transitions.

Everything that changes a task's state (the scheduler core, the tests'
invariant checkers, the event validators) checks against
:data:`TASK_TRANSITIONS`; nothing else spells the pairs out.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """The state of a whole job."""

    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES


class TaskState(enum.StrEnum):
    """The state of one task (one DAG node) within a job."""

    UNSCHEDULED = "unscheduled"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    EXCEPTION = "exception"
    TIMED_OUT = "timed_out"
    INVALID_RESULT = "invalid_result"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


_T = TaskState

#: The allowed (old, new) task transitions, and no others.
TASK_TRANSITIONS: frozenset[tuple[TaskState, TaskState]] = frozenset(
    {
        (_T.UNSCHEDULED, _T.READY),
        (_T.UNSCHEDULED, _T.COMPLETED),  # restored from a journal (resume)
        (_T.READY, _T.COMPLETED),  # a cache hit
        (_T.UNSCHEDULED, _T.SKIPPED),
        (_T.UNSCHEDULED, _T.UPSTREAM_FAILED),
        (_T.READY, _T.RUNNING),
        (_T.READY, _T.SKIPPED),
        (_T.RUNNING, _T.COMPLETED),
        (_T.RUNNING, _T.EXCEPTION),
        (_T.RUNNING, _T.TIMED_OUT),
        (_T.RUNNING, _T.INVALID_RESULT),
        (_T.RUNNING, _T.CANCELLED),
        (_T.RUNNING, _T.FAILED),  # a mapped task whose child failed (_maps.py)
        (_T.EXCEPTION, _T.READY),
        (_T.EXCEPTION, _T.FAILED),
        (_T.EXCEPTION, _T.CANCELLED),
        (_T.TIMED_OUT, _T.READY),
        (_T.TIMED_OUT, _T.FAILED),
        (_T.TIMED_OUT, _T.CANCELLED),
    }
)

#: The allowed (old, new) job transitions.
JOB_TRANSITIONS: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        (JobState.IDLE, JobState.RUNNING),
        (JobState.RUNNING, JobState.COMPLETED),
        (JobState.RUNNING, JobState.FAILED),
        (JobState.RUNNING, JobState.TIMED_OUT),
        (JobState.RUNNING, JobState.CANCELLED),
    }
)

TERMINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {_T.COMPLETED, _T.FAILED, _T.INVALID_RESULT, _T.CANCELLED, _T.SKIPPED, _T.UPSTREAM_FAILED}
)

TERMINAL_JOB_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)

#: Terminal states that count as a failure for ``run_if`` and UPSTREAM_FAILED.
FAILED_TASK_STATES: frozenset[TaskState] = frozenset(
    {_T.FAILED, _T.INVALID_RESULT, _T.UPSTREAM_FAILED}
)
