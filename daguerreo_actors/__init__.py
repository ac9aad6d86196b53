"""Run a DAG of tasks inside your process, on pykka actors.

See the README for the guarantees; the names below are the whole public API.
"""

from daguerreo_actors._errors import InternalError, InvalidTasksError, TaskError
from daguerreo_actors._events import Event, JobEvent, TaskEvent
from daguerreo_actors._job import Job, JobResult, cancel
from daguerreo_actors._run import run
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._task import Task
from daguerreo_actors._validation import validate_tasks

__all__ = [
    "Event",
    "InternalError",
    "InvalidTasksError",
    "Job",
    "JobEvent",
    "JobResult",
    "JobState",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskState",
    "cancel",
    "run",
    "validate_tasks",
]

__version__ = "0.1.0"
