"""Pickling for the tiers whose code runs in another process (processes, Dask).

The engine pickles what crosses itself, not the executor, so a failure names
the task and the offending key (:class:`NotPicklableError`) instead of
surfacing as a bare PicklingError, or as a broken pool, later.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from daguerreo_actors._errors import NotPicklableError, RemoteTaskError

PROTOCOL = pickle.HIGHEST_PROTOCOL

#: Characters of a remote exception's message and traceback kept.
REMOTE_LIMIT = 20_000


def call_remotely(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` where the code runs; an exception that cannot be pickled comes back
    as a :class:`RemoteTaskError` (its type, message and traceback as text), so the
    original's information survives the trip and the pool stays healthy.

    The check pickles what the executor will: with ``tblib`` installed (distributed
    installs it) that includes the exception's ``__context__`` and ``__cause__``,
    whose failure to pickle killed the worker process (``BrokenProcessPool``).
    """
    try:
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001 - judged below, outside the handler
        failure = exc
    from multiprocessing.reduction import ForkingPickler

    try:
        pickle.loads(ForkingPickler.dumps(failure, PROTOCOL))
    except BaseException:  # noqa: BLE001 - anything at all: we replace it
        error = remote_error(failure)
    else:
        raise failure
    # Raised outside any handler, with no chain: nothing unpicklable rides along.
    del failure
    error.__cause__ = error.__context__ = None
    raise error


def remote_error(exc: BaseException) -> RemoteTaskError:
    """A picklable stand-in for ``exc``: qualified type name, message, traceback text."""
    import traceback

    from daguerreo_actors._text import cut, safe_str

    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    try:
        text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        text = ""
    return RemoteTaskError(name, cut(safe_str(exc), REMOTE_LIMIT), cut(text, REMOTE_LIMIT))


def pickle_call(task: str, fn: Callable[..., Any], ctx: Mapping[Any, Any]) -> bytes:
    """Pickle (fn, ctx), or raise NotPicklableError naming the culprit."""
    try:
        return pickle.dumps((fn, ctx), protocol=PROTOCOL)
    except Exception as exc:
        try:
            pickle.dumps(fn, protocol=PROTOCOL)
        except Exception as fn_exc:
            raise NotPicklableError(
                f"task {task!r}: its fn cannot be pickled to run in another process "
                f"({type(fn_exc).__name__}: {fn_exc}); define it at module level "
                "(not a lambda or a local function)"
            ) from fn_exc
        raise offending(task, "ctx key", ctx, exc) from exc


def pickle_result(task: str, result: Any) -> bytes:
    """Pickle a task's result where it ran, or raise NotPicklableError."""
    try:
        return pickle.dumps(result, protocol=PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        if isinstance(result, Mapping):
            raise offending(task, "result key", result, exc) from None
        raise NotPicklableError(
            f"task {task!r}: its result cannot be pickled ({type(exc).__name__}: {exc})"
        ) from None


def offending(
    task: str, what: str, mapping: Mapping[Any, Any], exc: Exception
) -> NotPicklableError:
    bad: list[str] = []
    for key, value in mapping.items():
        try:
            pickle.dumps(value, protocol=PROTOCOL)
        except Exception:  # noqa: BLE001
            bad.append(repr(key))
    culprits = ", ".join(bad) if bad else "(a key itself)"
    return NotPicklableError(
        f"task {task!r}: {what} {culprits} cannot be pickled to cross processes "
        f"({type(exc).__name__}: {exc})"
    )
