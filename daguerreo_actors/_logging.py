"""The engine's structlog entries, at next to no cost when filtered out.

Every transition is logged through the structlog logger named
``daguerreo_actors``: ``job_transition`` (info) and ``task_transition``
(debug; EXCEPTION and TIMED_OUT at warning, INVALID_RESULT and FAILED at
error, with the exception). The library never configures structlog.

Until the application configures structlog (``structlog.is_configured()``),
debug and info entries are not emitted: structlog's unconfigured default
prints every level to stdout, which would flood an application that never
asked for our per-task entries. Warnings and errors always go out.

A filtered entry must cost next to nothing on the per-task path, so the
levels are resolved once per job from the bound logger
(``is_enabled_for``, which both structlog's filtering loggers and its
stdlib wrapper have) and a disabled level is skipped with one attribute
test, before any argument is built.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import Any, TextIO

import structlog

from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import safe_str

LOGGER_NAME = "daguerreo_actors"

_LEVELS: dict[TaskState, int] = {
    TaskState.EXCEPTION: logging.WARNING,
    TaskState.TIMED_OUT: logging.WARNING,
    TaskState.INVALID_RESULT: logging.ERROR,
    TaskState.FAILED: logging.ERROR,
}


def _enabled(logger: Any, level: int) -> bool:
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return True
    try:
        return bool(check(level))
    except Exception:  # noqa: BLE001 - an exotic wrapper: log everything
        return True


class _SafeLogger:
    """A bound logger whose calls never raise.

    Processors and renderers are the application's code: one that raises
    must not take a job down with it. The first failure is reported once as
    a RuntimeWarning; entries that fail are dropped.
    """

    __slots__ = ("_bound", "_warned")

    def __init__(self, bound: Any) -> None:
        self._bound = bound
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._bound, name)

        def call(*args: Any, **kwargs: Any) -> None:
            try:
                method(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - see the class docstring
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"daguerreo_actors: logging an entry raised {exc!r}; "
                        "entries that fail are dropped",
                        RuntimeWarning,
                        stacklevel=2,
                    )

        return call


class TransitionLog:
    """Logs one job's transitions.

    Every entry carries ``job_id`` and ``ts`` (the transition's wall-clock
    time, epoch seconds); task entries ``task``, ``old_state``,
    ``new_state``, ``attempt``; transitions out of RUNNING the attempt's
    ``duration`` (seconds); UNSCHEDULED -> READY the task's ``dependencies``
    (what ``daguerreo-actors summary`` needs for the critical path);
    COMPLETED the ``result_keys``; failures ``error_type`` and ``error``
    (the exception's message, as raised). Values (results, bad results)
    appear only with ``log_values=True``: they may hold secrets.
    """

    __slots__ = (
        "_log",
        "debug_enabled",
        "error_enabled",
        "info_enabled",
        "log_values",
        "warning_enabled",
    )

    def __init__(self, job_id: str, *, log_values: bool = False) -> None:
        bound = structlog.get_logger(LOGGER_NAME).bind(job_id=job_id)
        self._log = _SafeLogger(bound)
        self.log_values = log_values
        # Unconfigured, structlog prints every level to stdout: a library's
        # per-task chatter would flood an application that never asked for
        # it. Until the application configures structlog, only warnings and
        # errors are emitted (stdlib logging's own default for libraries).
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

    def job(self, old: JobState, new: JobState, ts: float, duration: float | None = None) -> None:
        if not self.info_enabled:
            return
        extra: dict[str, Any] = {}
        if duration is not None:
            extra["duration"] = round(duration, 6)
        self._log.info("job_transition", old_state=old.value, new_state=new.value, ts=ts, **extra)

    def task(
        self,
        name: str,
        old: TaskState,
        new: TaskState,
        attempt: int,
        payload: Any,
        ts: float,
        duration: float | None = None,
        dependencies: list[str] | None = None,
    ) -> None:
        """Log one transition; the caller has checked ``enabled_for(new)``."""
        level = _LEVELS.get(new, logging.DEBUG)
        extra: dict[str, Any] = {}
        if duration is not None:
            extra["duration"] = round(duration, 6)
        if dependencies is not None:
            extra["dependencies"] = dependencies
        if isinstance(payload, BaseException):
            extra["exc_info"] = payload
            extra["error_type"] = type(payload).__name__
            extra["error"] = safe_str(payload)  # its __str__ is user code
        elif new is TaskState.COMPLETED and payload is not None:
            extra["result_keys"] = [safe_str(key) for key in payload]
            if self.log_values:
                extra["result"] = payload
        elif new is TaskState.INVALID_RESULT:
            extra["result_type"] = type(payload).__name__
            if self.log_values:
                extra["result"] = repr(payload)
        self._log.log(
            level,
            "task_transition",
            task=name,
            old_state=old.value,
            new_state=new.value,
            attempt=attempt,
            ts=ts,
            **extra,
        )

    def late_result(self, name: str, attempt: int) -> None:
        if self.debug_enabled:
            self._log.debug(
                "late_result_discarded",
                task=name,
                attempt=attempt,
                reason="attempt no longer running (timed out, or the job ended)",
            )

    def listener_dropped(
        self, listener: int, dropped: int, limit: int, *, final: bool = False
    ) -> None:
        if self.warning_enabled:
            self._log.warning(
                "listener_events_dropped",
                listener=listener,
                dropped=dropped,
                backlog_limit=limit,
                when="job end (total)" if final else "backlog full (dropping starts)",
            )

    def internal_error(self, where: str, exc: BaseException) -> None:
        self._log.error("internal_error", where=where, exc_info=exc)


def log_outside(level: int, event: str, **fields: Any) -> None:
    """Log from outside a JobActor (pool threads, listener proxies), safely.

    Follows the same rules as the JobActor's entries: nothing below warning
    until the application configures structlog, and a processor that
    raises (anything) drops the entry instead of breaking the caller.
    """
    if level < logging.WARNING and not structlog.is_configured():
        return
    try:
        structlog.get_logger(LOGGER_NAME).log(level, event, **fields)
    except BaseException:  # noqa: BLE001 - logging must never break a job
        pass


_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _dumps(entry: Any, **kwargs: Any) -> str:
    """json.dumps that never raises on an entry's values.

    ``default=repr`` covers unknown types, not what json.dumps rejects
    outright (non-str keys such as tuples in a logged result, circular
    values): such a value is logged as its repr. An exception here would
    escape from the engine's logging call.
    """
    try:
        return json.dumps(entry, **kwargs)
    except (TypeError, ValueError, RecursionError):
        safe: dict[str, Any] = {}
        for key, value in entry.items():
            try:
                json.dumps(value, **kwargs)
            except (TypeError, ValueError, RecursionError):
                value = repr(value)
            safe[str(key)] = value
        return json.dumps(safe, **kwargs)


# The file configure_logging opened last; closed when it is called again.
_log_file: TextIO | None = None


def configure_logging(
    json_file: str | os.PathLike[str] | TextIO | None = None,
    level: str | int = "info",
) -> None:
    """Route structlog to JSON lines, in the shape ``daguerreo-actors tail`` reads.

    An optional helper for applications (the library never calls it): one
    JSON object per line, with ``timestamp`` (ISO 8601, UTC) and ``level``,
    written to ``json_file`` (a path, appended to, or an open text file) or
    to stderr. ``level`` is a name (``"debug"`` shows every task transition;
    ``"info"``, the default, job transitions and failures) or a
    ``logging`` level number. This configures structlog globally, for the
    whole application, as any structlog configuration does.
    """
    global _log_file
    if isinstance(level, str):
        try:
            number = _LEVEL_NAMES[level.lower()]
        except KeyError:
            names = ", ".join(_LEVEL_NAMES)
            raise ValueError(f"level must be one of {names} or an int, got {level!r}") from None
    elif isinstance(level, int) and not isinstance(level, bool):
        number = level
    else:
        raise TypeError(f"level must be a str or an int, got {type(level).__name__}")
    if json_file is None:
        stream: TextIO = sys.stderr
    elif isinstance(json_file, (str, os.PathLike)):
        stream = open(json_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open
    else:
        stream = json_file
    previous = _log_file
    # Only a file we opened is ours to close later.
    _log_file = stream if isinstance(json_file, (str, os.PathLike)) else None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps, default=repr),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if previous is not None and previous is not stream:
        previous.close()
