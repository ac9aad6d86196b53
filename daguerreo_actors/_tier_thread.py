"""The default tier: the task function runs right on the pool thread.

The TaskActor's mailbox runs on a thread of the shared pool (``_pool.py``),
and this tier calls the function there, so an attempt costs no hand-over at
all. ``is_active`` is the attempt's own. What the report hands back (the
next node this thread may run, see ``_offers.py``) is returned to the pool
loop, which runs it next on the same thread.

A function that is not ``async def`` but returns a coroutine (a wrapper, a
partial) has that coroutine run on the engine's loop, like an async task.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._tiers import Reporter

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn


class ThreadTier:
    """Runs the function on the calling pool thread."""

    __slots__ = ()

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        try:
            value = fn(ctx, attempt.is_active)
        except BaseException as exc:  # noqa: BLE001 - user code must not take us down
            return report.raised(attempt, exc, here=True)
        if inspect.iscoroutine(value):
            from daguerreo_actors._tier_async import ASYNC

            ASYNC.run(attempt, value, report)
            return None
        return report.returned(attempt, value, here=True)

    def close(self) -> None:
        pass


#: Stateless: one instance serves every job.
THREADS = ThreadTier()
