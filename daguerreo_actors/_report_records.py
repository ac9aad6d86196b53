"""One transition of a job as a JobReport reads it, whichever source it came from.

A listener's event (:func:`from_event`) and a JSON log entry
(:func:`from_entry`) both become a :class:`Record`; the report then never
asks where a record came from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from daguerreo_actors._errors import invalid_result_message
from daguerreo_actors._events import Event, JobEvent, TaskEvent
from daguerreo_actors._logfile import (
    ATTEMPT,
    DEPENDENCIES,
    NEW_STATE,
    OLD_STATE,
    PROGRESS,
    REASON,
    TASK,
    TS,
    entry_error,
    is_task_entry,
)
from daguerreo_actors._logging import ERROR_LIMIT
from daguerreo_actors._states import TaskState
from daguerreo_actors._text import cut, progress_text, safe_str


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One transition, whichever source it came from."""

    task: str | None  # None: the job itself
    old: str
    new: str
    attempt: int
    ts: float
    error: str | None = None
    dependencies: tuple[str, ...] | None = None
    reason: str | None = None
    progress: str | None = None


def from_event(event: Event) -> Record:
    if isinstance(event, JobEvent):
        return Record(None, event.old_state.value, event.new_state.value, 0, event.timestamp)
    assert isinstance(event, TaskEvent)
    error = None
    if event.exception is not None:
        # Cut as the log cuts it: a report reads the same from either source.
        error = f"{type(event.exception).__name__}: {cut(safe_str(event.exception), ERROR_LIMIT)}"
    elif event.new_state is TaskState.INVALID_RESULT:
        # What the log's entry says too (without the value).
        error = invalid_result_message(event.task, event.result)
    progress = None if event.progress is None else progress_text(event.progress)
    return Record(
        event.task,
        event.old_state.value,
        event.new_state.value,
        event.attempt,
        event.timestamp,
        error,
        reason=event.reason,
        progress=progress,
    )


def from_entry(entry: dict[str, Any]) -> Record:
    deps = entry.get(DEPENDENCIES)
    return Record(
        entry.get(TASK) if is_task_entry(entry) else None,
        str(entry[OLD_STATE]),
        str(entry[NEW_STATE]),
        int(entry.get(ATTEMPT, 0)),
        float(entry[TS]),
        entry_error(entry),
        tuple(str(d) for d in deps) if isinstance(deps, list) else None,
        reason=_text_field(entry, REASON),
        progress=_text_field(entry, PROGRESS),
    )


def _text_field(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return value if isinstance(value, str) else None
