"""The default tier: the task function runs right on the pool thread.

The TaskActor's mailbox runs on a thread of the shared pool (``_pool.py``),
and this tier calls the function there, so an attempt costs no hand-over at
all. ``is_active`` is the attempt's own. What the report hands back (the
next node this thread may run, see ``_offers.py``) is returned to the pool
loop, which runs it next on the same thread.

A function that is not ``async def`` but returns a coroutine (a wrapper, a
partial) has that coroutine run on the engine's loop, like an async task.

Python cannot stop a thread: an abandoned attempt runs until its code
returns. A task with ``interrupt=True`` runs on :class:`InterruptingThreadTier`,
whose handle raises :class:`TaskInterrupted` in the thread ``kill_after``
seconds past the abandon (``PyThreadState_SetAsyncExc``): it lands at the
next Python instruction, not inside a blocking system call, and ``finally``
blocks still run. It is off by default because an exception can land in the
middle of anything the task does (a half-written file, a lock taken).
"""

from __future__ import annotations

import ctypes
import inspect
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._errors import TaskInterrupted
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
        if type(value) is not dict and inspect.iscoroutine(value):  # a dict: no call
            from daguerreo_actors._tier_async import ASYNC

            ASYNC.run(attempt, value, report)
            return None
        return report.returned(attempt, value, here=True)

    def close(self) -> None:
        pass


#: Stateless: one instance serves every job.
THREADS = ThreadTier()

#: The attempt a thread of a job on a virtual clock runs (``testing.py``).
current = threading.local()


class VirtualThreadTier(ThreadTier):
    """The thread tier of a job on a virtual clock: it says which attempt a thread runs,
    so that ``VirtualClock.sleep`` can mark it parked."""

    __slots__ = ()

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        current.attempt = attempt
        try:
            return super().start(attempt, fn, ctx, report)
        finally:
            current.attempt = None


VIRTUAL_THREADS = VirtualThreadTier()


class _Interrupter:
    """The handle of a thread attempt that may be interrupted (``Task(interrupt=True)``).

    ``kill`` raises :class:`TaskInterrupted` in the attempt's thread, but only
    while that thread is in the task's code: entering and leaving it, and the
    kill, happen under one lock, and leaving clears an exception raised too
    late to land in the task's code.
    """

    __slots__ = ("_ident", "_in_code", "_lock")

    def __init__(self) -> None:
        self._ident = threading.get_ident()
        self._lock = threading.Lock()
        self._in_code = True

    def cancel(self) -> None:
        pass  # is_active() is all a thread hears of an abandon

    def kill(self) -> None:
        with self._lock:
            if self._in_code:
                _set_async_exc(self._ident, TaskInterrupted)

    def leave(self) -> None:
        with self._lock:
            self._in_code = False
            _set_async_exc(self._ident, None)  # one raised too late: cleared


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    value = ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(0)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), value)


class InterruptingThreadTier(ThreadTier):
    """The thread tier for tasks with ``interrupt=True``; see :class:`_Interrupter`."""

    __slots__ = ()

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        interrupter = _Interrupter()
        attempt.attach(interrupter)
        try:
            try:
                value = fn(ctx, attempt.is_active)
            finally:
                while True:  # an interruption may land here, before leave()
                    try:
                        interrupter.leave()
                        break
                    except TaskInterrupted:
                        continue
        except BaseException as exc:  # noqa: BLE001 - TaskInterrupted included
            return report.raised(attempt, exc, here=True)
        if inspect.iscoroutine(value):
            from daguerreo_actors._tier_async import ASYNC

            ASYNC.run(attempt, value, report)
            return None
        return report.returned(attempt, value, here=True)


INTERRUPTING = InterruptingThreadTier()
