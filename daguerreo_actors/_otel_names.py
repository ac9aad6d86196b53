"""The names our OpenTelemetry spans and metrics use, in one place.

Where an OpenTelemetry semantic convention has the attribute, its name is
used: the CI/CD conventions (``cicd.pipeline.*``: a job is a pipeline run,
a task attempt a task run) and the general ``error.type``; ours are under
``daguerreo.*``. The README's "Tracing and metrics" lists them.
"""

from __future__ import annotations

from daguerreo_actors._events import JobInfo
from daguerreo_actors._map_child import CHILD_NAME
from daguerreo_actors._states import JobState, TaskState

INSTRUMENTATION = "daguerreo_actors"

# CI/CD semantic conventions (development status in semconv 1.3x).
PIPELINE_NAME = "cicd.pipeline.name"
PIPELINE_RUN_ID = "cicd.pipeline.run.id"
PIPELINE_RESULT = "cicd.pipeline.result"
TASK_NAME = "cicd.pipeline.task.name"
TASK_RUN_ID = "cicd.pipeline.task.run.id"
TASK_RUN_RESULT = "cicd.pipeline.task.run.result"
# General conventions.
ERROR_TYPE = "error.type"
# Ours.
ATTEMPT = "daguerreo.attempt"
STATE = "daguerreo.state"
QUEUE_WAIT = "daguerreo.queue_wait"
RETRY_IN = "daguerreo.retry_in"
REASON = "daguerreo.timeout_reason"
RESTORED = "daguerreo.restored"
CACHED = "daguerreo.cached"
RESULT_KEYS = "daguerreo.result_keys"
RESULT = "daguerreo.result"
ERROR_MESSAGE = "daguerreo.error.message"
MAPPED_FROM = "daguerreo.mapped_from"
MAPPED_CHILD = "daguerreo.mapped_child"
OUTCOME = "daguerreo.outcome"

#: An attempt's end state as a CI/CD task run result.
TASK_RESULTS: dict[TaskState, str] = {
    TaskState.COMPLETED: "success",
    TaskState.EXCEPTION: "failure",
    TaskState.INVALID_RESULT: "failure",
    TaskState.FAILED: "failure",
    TaskState.TIMED_OUT: "timeout",
    TaskState.CANCELLED: "cancellation",
}

#: A job's end state as a CI/CD pipeline result.
JOB_RESULTS: dict[JobState, str] = {
    JobState.COMPLETED: "success",
    JobState.FAILED: "failure",
    JobState.TIMED_OUT: "timeout",
    JobState.CANCELLED: "cancellation",
}

#: States an attempt (a RUNNING task) ends in.
ATTEMPT_ENDS = frozenset(TASK_RESULTS)


def mapped_parent(task: str, info: JobInfo | None) -> str | None:
    """The mapped task ``task`` is a child of (``sq`` for ``sq[3]``), or None."""
    if info is None or task in info.dependencies:
        return None
    match = CHILD_NAME.fullmatch(task)
    if match is None or match.group(1) not in info.mapped:
        return None
    return match.group(1)


def job_span_name(job_id: str, info: JobInfo | None) -> str:
    """The job's ``name=`` if it has one, else ``job <id prefix>``."""
    if info is not None and info.name:
        return info.name
    return f"job {job_id[:8]}"
