"""The executor tier: attempts on a user's ``concurrent.futures.Executor``.

``submit`` is the user's code: it may block (a bounded executor waiting for
room) or even run the call itself. It is called on a pool thread, never on
the JobActor's, so a blocking submit delays only its own attempt: the
attempt counts as RUNNING (and its timeout runs) from the moment it was
handed over, and its slot stays taken meanwhile.

Abandoning an attempt cancels its future: one still queued in the executor
never starts; one already running cannot be stopped (its ``is_active()``
turns False, and what it returns is discarded).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._tiers import Reporter, follow_future

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn


class ExecutorTier:
    """A thread-based ``concurrent.futures.Executor``."""

    __slots__ = ("_executor",)

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        try:
            future = self._executor.submit(fn, ctx, attempt.is_active)
        except BaseException as exc:  # noqa: BLE001 - e.g. a shut-down executor
            report.raised(attempt, exc)
            return None
        follow_future(future, attempt, report)
        return None

    def close(self) -> None:
        pass
