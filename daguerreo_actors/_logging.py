"""The engine's structlog entries: built on the job's path, written off it.

Every transition is logged through the structlog logger named
``daguerreo_actors``: ``job_transition`` (info) and ``task_transition``
(debug; EXCEPTION and TIMED_OUT at warning, INVALID_RESULT and FAILED at
error). The library never configures structlog. Field names are those of
the log schema, ``_logfile.py``.

The JobActor only builds an entry's plain fields; the structlog call, and
anything that runs user code (an exception's ``__str__``, formatting a
traceback), happens on the log writer's thread (``_logwriter.py``), so no
processor, renderer or exception can delay a job. No entry hands structlog
a live exception: a failure carries ``error_type`` and ``error`` (the
message, cut to :data:`ERROR_LIMIT` characters), and the entry for FAILED a
``traceback`` field, plain text, frames only, no locals. Values (results,
ctx, bad results) appear only with ``log_values=True``.

Until the application configures structlog (``structlog.is_configured()``),
debug and info entries are not emitted: structlog's unconfigured default
prints every level to stdout, which would flood an application that never
asked for our per-task entries. Warnings and errors always go out.

A filtered entry must cost next to nothing on the per-task path, so the
levels are resolved once per job from the bound logger
(``is_enabled_for``, which both structlog's filtering loggers and its
stdlib wrapper have) and a disabled level is skipped with one attribute
test, before any field is built.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable
from typing import Any

from daguerreo_actors._logwriter import writer
from daguerreo_actors._result import KeyConflict
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import cut, safe_repr, safe_str

LOGGER_NAME = "daguerreo_actors"

#: Characters of an error message kept in an entry.
ERROR_LIMIT = 500
#: Characters of a formatted traceback kept in an entry.
TRACEBACK_LIMIT = 4000
#: Characters of a bad result's repr kept (only with ``log_values=True``).
VALUE_LIMIT = 200

_LEVELS: dict[TaskState, int] = {
    TaskState.EXCEPTION: logging.WARNING,
    TaskState.TIMED_OUT: logging.WARNING,
    TaskState.INVALID_RESULT: logging.ERROR,
    TaskState.FAILED: logging.ERROR,
    TaskState.UPSTREAM_FAILED: logging.WARNING,
}


def _enabled(logger: Any, level: int) -> bool:
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return True
    try:
        return bool(check(level))
    except Exception:  # noqa: BLE001 - an exotic wrapper: log everything
        return True


def error_fields(exc: BaseException, *, with_traceback: bool = False) -> dict[str, Any]:
    """``error_type``, ``error`` (cut) and, if asked, ``traceback`` of an exception.

    Runs user code (the exception's ``__str__``): call it off the job's path.
    """
    fields: dict[str, Any] = {
        "error_type": type(exc).__name__,
        "error": cut(safe_str(exc), ERROR_LIMIT),
    }
    if with_traceback:
        fields["traceback"] = format_traceback(exc)
    return fields


def format_traceback(exc: BaseException) -> str:
    """The exception's traceback as plain text: frames and message, no locals, cut."""
    import traceback

    try:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        text = "".join(lines)
    except BaseException:  # noqa: BLE001 - a __str__ that raises, a broken frame
        text = f"{type(exc).__name__}: {safe_str(exc)}"
    return cut(text.rstrip("\n"), TRACEBACK_LIMIT)


class TransitionLog:
    """Builds one job's entries and hands them to the log writer.

    Every entry carries ``job_id`` and ``ts`` (the transition's wall-clock
    time, epoch seconds); task entries ``task``, ``old_state``,
    ``new_state``, ``attempt``; transitions out of RUNNING the attempt's
    ``duration`` (seconds); UNSCHEDULED -> READY the task's ``dependencies``
    (what ``daguerreo-actors summary`` needs for the critical path);
    COMPLETED the ``result_keys``; transitions out of RUNNING the attempt's
    last ``is_active(progress)`` value as ``progress`` (a short repr);
    failures ``error_type`` and ``error``;
    FAILED also ``traceback``; INVALID_RESULT ``result_type`` and, as
    ``error``, what was wrong with it (no value without ``log_values``).
    """

    __slots__ = (
        "_bound",
        "_job_id",
        "_name",
        "_put",
        "debug_enabled",
        "error_enabled",
        "info_enabled",
        "log_values",
        "warning_enabled",
    )

    def __init__(self, job_id: str, *, log_values: bool = False, name: str | None = None) -> None:
        # Called in run(), on the caller's thread: resolving the levels may
        # run the application's wrapper class.
        self._job_id = job_id
        self._name = name  # run(name=): on the job's IDLE -> RUNNING entry
        self._put = writer().put
        self.log_values = log_values
        # Unconfigured, structlog prints every level to stdout: a library's
        # per-task chatter would flood an application that never asked for
        # it. Until the application configures structlog, only warnings and
        # errors are emitted (stdlib logging's own default for libraries).
        structlog = sys.modules.get("structlog")
        if structlog is None:
            # Nobody imported structlog, so nobody configured it: it is
            # imported only if an entry is written (on the log writer's
            # thread). Importing it cost a job 60-100 ms (it pulls in rich).
            self._bound: Any = _LazyLogger(job_id)
            self.debug_enabled = self.info_enabled = False
            self.warning_enabled = self.error_enabled = True
            return
        bound = self._bound = structlog.get_logger(LOGGER_NAME).bind(job_id=job_id)
        configured = structlog.is_configured()
        self.debug_enabled = configured and _enabled(bound, logging.DEBUG)
        self.info_enabled = configured and _enabled(bound, logging.INFO)
        self.warning_enabled = _enabled(bound, logging.WARNING)
        self.error_enabled = _enabled(bound, logging.ERROR)

    def enabled_for(self, new: TaskState) -> bool:
        """Would a task transition to ``new`` be logged?"""
        level = _LEVELS.get(new, logging.DEBUG)
        if level == logging.DEBUG:
            return self.debug_enabled
        return self.error_enabled if level == logging.ERROR else self.warning_enabled

    def emit(
        self,
        level: int,
        event: str,
        fields: dict[str, Any],
        prepare: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Queue one entry; ``prepare`` completes its fields on the writer's thread."""
        self._put(self._bound, level, event, fields, prepare)

    def job(self, old: JobState, new: JobState, ts: float, duration: float | None = None) -> None:
        if not self.info_enabled:
            return
        fields: dict[str, Any] = {"old_state": old.value, "new_state": new.value, "ts": ts}
        if self._name is not None and old is JobState.IDLE:
            fields["job_name"] = self._name
        if duration is not None:
            fields["duration"] = round(duration, 6)
        self.emit(logging.INFO, "job_transition", fields)

    def task(
        self,
        name: str,
        old: TaskState,
        new: TaskState,
        attempt: int,
        ts: float,
        *,
        result: Any = None,
        exception: BaseException | None = None,
        detail: str | None = None,
        retry_in: float | None = None,
        reason: str | None = None,
        duration: float | None = None,
        dependencies: list[str] | None = None,
        progress: str | None = None,
        restored: bool = False,
        cached: bool = False,
    ) -> None:
        """Log one transition; the caller has checked ``enabled_for(new)``."""
        level = _LEVELS.get(new, logging.DEBUG)
        fields: dict[str, Any] = {
            "task": name,
            "old_state": old.value,
            "new_state": new.value,
            "attempt": attempt,
            "ts": ts,
        }
        if duration is not None:
            fields["duration"] = round(duration, 6)
        if dependencies is not None:
            fields["dependencies"] = dependencies
        if new is TaskState.EXCEPTION or new is TaskState.TIMED_OUT:
            fields["retry_in"] = None if retry_in is None else round(retry_in, 6)
        if reason is not None:
            fields["reason"] = reason
        if progress is not None:
            fields["progress"] = progress
        if restored:
            fields["restored"] = True
        if cached:
            fields["cached"] = True
        prepare: Callable[[dict[str, Any]], None] | None = None
        if exception is not None:
            prepare = _ExceptionFields(exception, new is TaskState.FAILED)
        elif new is TaskState.COMPLETED and result is not None:
            prepare = _ResultFields(result, self.log_values)
        elif new is TaskState.INVALID_RESULT:
            fields["result_type"] = type(result).__name__
            if detail is not None:
                fields["error"] = detail
            if self.log_values:
                prepare = _ValueFields(result)
        self.emit(level, "task_transition", fields, prepare)

    def late_result(self, name: str, attempt: int) -> None:
        if self.debug_enabled:
            self.emit(
                logging.DEBUG,
                "late_result_discarded",
                {
                    "task": name,
                    "attempt": attempt,
                    "reason": "attempt no longer running (timed out, or the job ended)",
                },
            )

    def listener_dropped(
        self, listener: int, dropped: int, limit: int, *, final: bool = False
    ) -> None:
        if self.warning_enabled:
            self.emit(
                logging.WARNING,
                "listener_events_dropped",
                {
                    "listener": listener,
                    "dropped": dropped,
                    "backlog_limit": limit,
                    "when": "job end (total)" if final else "backlog full (dropping starts)",
                },
            )

    def task_progress(self, task: str, attempt: int, progress: str) -> None:
        """An attempt's ``is_active(progress)`` value changed (debug; throttled by the caller)."""
        if self.debug_enabled:
            self.emit(
                logging.DEBUG,
                "task_progress",
                {"task": task, "attempt": attempt, "progress": progress},
            )

    def attempt_overrunning(self, task: str, attempt: int, seconds: float) -> None:
        if self.warning_enabled:
            self.emit(
                logging.WARNING,
                "attempt_overrunning",
                {"task": task, "attempt": attempt, "seconds_past": round(seconds, 3)},
            )

    def attempt_overran(self, task: str, attempt: int, seconds: float, discarded: bool) -> None:
        if self.warning_enabled:
            self.emit(
                logging.WARNING,
                "attempt_overran",
                {
                    "task": task,
                    "attempt": attempt,
                    "seconds_past": round(seconds, 3),
                    "result_discarded": discarded,
                },
            )

    def key_conflict(self, conflict: KeyConflict) -> None:
        if self.warning_enabled:
            self.emit(
                logging.WARNING,
                "ctx_key_conflict",
                {"first_task": conflict.first_task, "second_task": conflict.second_task},
                _KeyField(conflict.key),
            )

    def internal_error(self, where: str, exc: BaseException) -> None:
        self.emit(logging.ERROR, "internal_error", {"where": where}, _ExceptionFields(exc, True))


class _ExceptionFields:
    __slots__ = ("_exc", "_traceback")

    def __init__(self, exc: BaseException, with_traceback: bool) -> None:
        self._exc = exc
        self._traceback = with_traceback

    def __call__(self, fields: dict[str, Any]) -> None:
        fields.update(error_fields(self._exc, with_traceback=self._traceback))


class _KeyField:
    __slots__ = ("_key",)

    def __init__(self, key: Any) -> None:
        self._key = key

    def __call__(self, fields: dict[str, Any]) -> None:
        fields["key"] = cut(safe_repr(self._key), 100)


def result_keys(result: Any, limit: int | None = None) -> list[str]:
    """The keys of an output as the log shows them (the first ``limit`` of them)."""
    return [safe_str(key) for key in itertools.islice(result, limit)]


class _ResultFields:
    __slots__ = ("_result", "_values")

    def __init__(self, result: Any, values: bool) -> None:
        self._result = result
        self._values = values

    def __call__(self, fields: dict[str, Any]) -> None:
        fields["result_keys"] = result_keys(self._result)
        if self._values:
            fields["result"] = self._result


class _ValueFields:
    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __call__(self, fields: dict[str, Any]) -> None:
        fields["result"] = cut(safe_repr(self._value), VALUE_LIMIT)


class _LazyLogger:
    """A job's structlog logger, bound when the log writer first writes with it."""

    __slots__ = ("_bound", "_job_id")

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._bound: Any = None

    def log(self, level: int, event: str, **fields: Any) -> Any:
        if self._bound is None:
            import structlog

            self._bound = structlog.get_logger(LOGGER_NAME).bind(job_id=self._job_id)
        return self._bound.log(level, event, **fields)


def log_outside(level: int, event: str, **fields: Any) -> None:
    """Log from outside a job's path (pool threads, listener proxies), safely.

    Follows the same rules as a job's entries: nothing below warning until
    the application configures structlog; written by the log writer.
    Exceptions go in as ``exc`` and are turned into error fields there.
    """
    import structlog

    if level < logging.WARNING and not structlog.is_configured():
        return
    exc = fields.pop("exc", None)
    prepare = None if exc is None else _ExceptionFields(exc, True)
    try:
        writer().put(structlog.get_logger(LOGGER_NAME), level, event, fields, prepare)
    except BaseException:  # noqa: BLE001 - logging must never break a job
        pass
