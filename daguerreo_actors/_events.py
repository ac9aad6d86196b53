"""The events a job reports to its listeners.

The JobActor builds these only when the job has listeners, from the
transitions its scheduler core recorded while handling one message, and
sends them to every listener's proxy actor as one :class:`EventBatch`. The
objects are frozen and shared between listeners, never copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daguerreo_actors._states import JobState, TaskState


@dataclasses.dataclass(frozen=True, slots=True)
class TaskEvent:
    """A task changed state.

    ``attempt`` counts the attempts started so far, including the one a
    RUNNING event starts. ``result`` holds the task's output on COMPLETED and
    the offending value on INVALID_RESULT; ``exception`` the exception on
    EXCEPTION (and on FAILED after an exception); ``retry_in``, on EXCEPTION
    and TIMED_OUT, the seconds until the retry (0 for at once; None when
    FAILED follows).
    """

    job_id: str
    task: str
    old_state: TaskState
    new_state: TaskState
    attempt: int
    timestamp: float
    result: Any = None
    exception: BaseException | None = None
    #: Into EXCEPTION or TIMED_OUT: seconds until the retry; None when none follows.
    retry_in: float | None = None
    #: Into TIMED_OUT: ``"deadline"`` or ``"heartbeat"`` (None otherwise).
    reason: str | None = None
    #: Out of RUNNING: the attempt's last ``is_active(progress)`` value (None if none).
    progress: Any = None
    #: UNSCHEDULED -> COMPLETED of a resumed job: the output came from the journal.
    restored: bool = False
    #: READY -> COMPLETED: the output came from the journal's cache.
    cached: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class JobEvent:
    """The job changed state."""

    job_id: str
    old_state: JobState
    new_state: JobState
    timestamp: float


@dataclasses.dataclass(frozen=True, slots=True)
class JobInfo:
    """What a listener learns before a job's first event.

    ``run()`` calls a listener's ``job_starting(info)`` method, where it has
    one, on the caller's thread just before the job starts (so a listener can
    read the caller's context, e.g. the active OpenTelemetry span), then
    sends events as usual. ``dependencies`` maps each task of the task list,
    in its order, to its dependencies' names; ``mapped`` names the mapped
    tasks (``Task(map_over=...)``), whose children ``task[i]`` appear only in
    events and depend on what their parent depends on.
    """

    job_id: str
    #: ``run(name=...)`` or ``Dag(name=...)``; None if none was given.
    name: str | None
    dependencies: Mapping[str, tuple[str, ...]]
    mapped: frozenset[str]
    #: ``run(log_values=...)``: whether values may leave the job in renderings.
    log_values: bool


Event = TaskEvent | JobEvent
