"""``configure_logging()``: an optional helper routing structlog to JSON lines.

The library never calls it (a library never configures logging); the CLI
and applications may. The lines are in the shape ``daguerreo-actors tail``
reads (``_logfile.py``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

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
    import json

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
    import structlog

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
