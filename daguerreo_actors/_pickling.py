"""Pickling for the tiers whose code runs in another process (processes, Dask).

The engine pickles what crosses itself, not the executor, so a failure names
the task and the offending key (:class:`NotPicklableError`) instead of
surfacing as a bare PicklingError, or as a broken pool, later.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from daguerreo_actors._errors import NotPicklableError

PROTOCOL = pickle.HIGHEST_PROTOCOL


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
        raise _offending(task, "ctx key", ctx, exc) from exc


def pickle_result(task: str, result: Any) -> bytes:
    """Pickle a task's result where it ran, or raise NotPicklableError."""
    try:
        return pickle.dumps(result, protocol=PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        if isinstance(result, Mapping):
            raise _offending(task, "result key", result, exc) from None
        raise NotPicklableError(
            f"task {task!r}: its result cannot be pickled ({type(exc).__name__}: {exc})"
        ) from None


def _offending(
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
