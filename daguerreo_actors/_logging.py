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

import logging
from typing import Any

import structlog

from daguerreo_actors._states import JobState, TaskState

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


class TransitionLog:
    """Logs one job's transitions."""

    __slots__ = ("_log", "debug_enabled", "error_enabled", "info_enabled", "warning_enabled")

    def __init__(self, job_id: str) -> None:
        self._log = structlog.get_logger(LOGGER_NAME).bind(job_id=job_id)
        # Unconfigured, structlog prints every level to stdout: a library's
        # per-task chatter would flood an application that never asked for
        # it. Until the application configures structlog, only warnings and
        # errors are emitted (stdlib logging's own default for libraries).
        configured = structlog.is_configured()
        self.debug_enabled = configured and _enabled(self._log, logging.DEBUG)
        self.info_enabled = configured and _enabled(self._log, logging.INFO)
        self.warning_enabled = _enabled(self._log, logging.WARNING)
        self.error_enabled = _enabled(self._log, logging.ERROR)

    def job(self, old: JobState, new: JobState, **extra: Any) -> None:
        if self.info_enabled:
            self._log.info("job_transition", old_state=old.value, new_state=new.value, **extra)

    def task(
        self,
        name: str,
        old: TaskState,
        new: TaskState,
        attempt: int,
        payload: Any,
    ) -> None:
        level = _LEVELS.get(new, logging.DEBUG)
        if level == logging.DEBUG:
            if self.debug_enabled:
                self._log.debug(
                    "task_transition",
                    task=name,
                    old_state=old.value,
                    new_state=new.value,
                    attempt=attempt,
                )
            return
        if not (self.error_enabled if level == logging.ERROR else self.warning_enabled):
            return
        extra: dict[str, Any] = {}
        if isinstance(payload, BaseException):
            extra["exc_info"] = payload
            extra["error_type"] = type(payload).__name__
            extra["error"] = str(payload)
        elif new is TaskState.INVALID_RESULT:
            # The value itself may hold secrets; its type is enough to debug.
            extra["result_type"] = type(payload).__name__
        self._log.log(
            level,
            "task_transition",
            task=name,
            old_state=old.value,
            new_state=new.value,
            attempt=attempt,
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
