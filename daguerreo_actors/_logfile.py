"""The log schema: what an entry of ours holds, and reading entries back.

The one home of the field names (written by ``TransitionLog`` in
``_logging.py``; read by ``JobReport.from_log``, ``daguerreo-actors tail``
and ``summary``), of :func:`parse_entry` / :func:`iter_entries`, and of
:class:`EntryFilter`, the job-id-prefix, task and state filter.

A transition entry (``event`` is ``job_transition`` or ``task_transition``)
always has ``job_id`` (str), ``ts`` (finite number, epoch seconds),
``old_state`` and ``new_state`` (state values); a task entry also ``task``
(str) and ``attempt`` (int). Optional: ``duration``, ``dependencies``
(list of task names, on UNSCHEDULED -> READY), ``result_keys`` (on
COMPLETED), ``error_type`` / ``error`` / ``traceback`` (failures),
``result_type`` (INVALID_RESULT), ``result`` (only with ``log_values``),
``reason`` (into TIMED_OUT: ``deadline`` or ``heartbeat``), ``progress``
(out of RUNNING: the attempt's last ``is_active(progress)``, a short repr).

A straggler entry (``attempt_overrunning``: still running ``kill_after``
past its deadline; ``attempt_overran``: its code returned at last) has
``job_id``, ``task``, ``attempt`` and ``seconds_past`` (past its deadline),
``attempt_overran`` also ``result_discarded``; :func:`iter_entries` yields
them only when asked (``stragglers=True``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from typing import Any

from daguerreo_actors._states import JobState, TaskState

JOB_TRANSITION = "job_transition"
TASK_TRANSITION = "task_transition"

# Field names.
EVENT = "event"
JOB_ID = "job_id"
JOB_NAME = "job_name"  # run(name=), on the job's IDLE -> RUNNING entry
TASK = "task"
OLD_STATE = "old_state"
NEW_STATE = "new_state"
ATTEMPT = "attempt"
TS = "ts"
DURATION = "duration"
DEPENDENCIES = "dependencies"
RESULT_KEYS = "result_keys"
ERROR_TYPE = "error_type"
ERROR = "error"
TRACEBACK = "traceback"
RESULT_TYPE = "result_type"
REASON = "reason"
PROGRESS = "progress"
SECONDS_PAST = "seconds_past"
RESULT_DISCARDED = "result_discarded"

ATTEMPT_OVERRUNNING = "attempt_overrunning"
ATTEMPT_OVERRAN = "attempt_overran"
STRAGGLER_EVENTS = frozenset({ATTEMPT_OVERRUNNING, ATTEMPT_OVERRAN})

_TASK_STATES = frozenset(s.value for s in TaskState)
_JOB_STATES = frozenset(s.value for s in JobState)


def parse_entry(line: str, *, stragglers: bool = False) -> dict[str, Any] | None:
    """One of our transition entries from a JSON log line, or None.

    None for anything else: not JSON, not an object, another logger's
    entry, or one of ours missing what a transition needs. With
    ``stragglers``, a well-formed straggler entry too.
    """
    import json

    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: deeply nested garbage
        return None
    if not isinstance(entry, dict):
        return None
    kind = entry.get(EVENT)
    if stragglers and kind in STRAGGLER_EVENTS:
        return entry if _is_straggler(entry) else None
    if kind not in (JOB_TRANSITION, TASK_TRANSITION):
        return None
    if not isinstance(entry.get(JOB_ID), str) or not _is_number(entry.get(TS)):
        return None
    if ATTEMPT in entry and not _is_int(entry[ATTEMPT]):
        return None
    states = _TASK_STATES if kind == TASK_TRANSITION else _JOB_STATES
    if entry.get(OLD_STATE) not in states or entry.get(NEW_STATE) not in states:
        return None
    if kind == TASK_TRANSITION and not isinstance(entry.get(TASK), str):
        return None
    return entry


def _is_straggler(entry: dict[str, Any]) -> bool:
    return (
        isinstance(entry.get(JOB_ID), str)
        and isinstance(entry.get(TASK), str)
        and _is_int(entry.get(ATTEMPT))
        and _is_number(entry.get(SECONDS_PAST))
    )


def is_straggler_entry(entry: dict[str, Any]) -> bool:
    return entry.get(EVENT) in STRAGGLER_EVENTS


def _is_number(value: object) -> bool:
    # json.loads reads NaN and Infinity; a bool is an int to isinstance.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def iter_entries(
    source: str | os.PathLike[str] | Iterable[str], *, stragglers: bool = False
) -> Iterable[dict[str, Any]]:
    """Our transition entries (and straggler entries, if asked) from a log file or lines."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8", errors="replace") as lines:
            yield from _entries(lines, stragglers)
    else:
        yield from _entries(source, stragglers)


def _entries(lines: Iterable[str], stragglers: bool) -> Iterable[dict[str, Any]]:
    for line in lines:
        entry = parse_entry(line, stragglers=stragglers)
        if entry is not None:
            yield entry


def is_task_entry(entry: dict[str, Any]) -> bool:
    return entry.get(EVENT) == TASK_TRANSITION


def entry_error(entry: dict[str, Any]) -> str | None:
    """``"Type: message"`` of a failure entry, the message of a bad result, or None."""
    if not entry.get(ERROR_TYPE):
        error = entry.get(ERROR)
        return error if isinstance(error, str) and error else None
    return f"{entry[ERROR_TYPE]}: {entry.get(ERROR, '')}"


@dataclasses.dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries to keep: a job id (or a prefix of one), a task, a new state."""

    job: str | None = None
    task: str | None = None
    state: str | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.job is not None and not str(entry[JOB_ID]).startswith(self.job):
            return False
        if self.task is not None and entry.get(TASK) != self.task:
            return False
        return self.state is None or entry[NEW_STATE] == self.state

    def matches_job(self, job_id: str | None) -> bool:
        return self.job is None or (job_id is not None and job_id.startswith(self.job))
