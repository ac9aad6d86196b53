"""Run a DAG of tasks inside your process, on pykka actors.

See the README for the guarantees; the names below are the whole public API.
"""

from typing import TYPE_CHECKING, Any

from daguerreo_actors._configure_logging import configure_logging
from daguerreo_actors._console import ProgressListener, event_logger
from daguerreo_actors._dag import Dag
from daguerreo_actors._diagram import to_dot, to_mermaid
from daguerreo_actors._errors import (
    InternalError,
    InvalidTasksError,
    JournalError,
    NotPicklableError,
    RemoteTaskError,
    SerializationError,
    TaskError,
    TaskInterrupted,
)
from daguerreo_actors._events import Event, JobEvent, JobInfo, TaskEvent
from daguerreo_actors._job import Job, cancel
from daguerreo_actors._report import AttemptReport, JobReport, TaskReport
from daguerreo_actors._result import Failure, JobResult, KeyConflict, Straggler
from daguerreo_actors._retry import RetryPolicy
from daguerreo_actors._run import run
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._task import Task
from daguerreo_actors._validation import validate_tasks

__all__ = [
    "AttemptReport",
    "Dag",
    "Event",
    "Failure",
    "InternalError",
    "InvalidTasksError",
    "Job",
    "JobEvent",
    "JobInfo",
    "JobReport",
    "JobResult",
    "JobState",
    "Journal",
    "JournalError",
    "KeyConflict",
    "NotPicklableError",
    "ProcessTier",
    "ProgressListener",
    "RemoteTaskError",
    "RetryPolicy",
    "SerializationError",
    "Straggler",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskInterrupted",
    "TaskReport",
    "TaskState",
    "cancel",
    "configure_logging",
    "event_logger",
    "resume",
    "run",
    "to_dot",
    "to_mermaid",
    "validate_tasks",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from daguerreo_actors._journal import Journal
    from daguerreo_actors._resume import resume
    from daguerreo_actors._tier_pebble import ProcessTier


def __getattr__(name: str) -> Any:
    # Imported on first use: the process tier pulls in multiprocessing, the
    # journal sqlite3.
    if name == "ProcessTier":
        from daguerreo_actors._tier_pebble import ProcessTier

        return ProcessTier
    if name == "Journal":
        from daguerreo_actors._journal import Journal

        return Journal
    if name == "resume":
        from daguerreo_actors._resume import resume

        return resume
    raise AttributeError(f"module 'daguerreo_actors' has no attribute {name!r}")
