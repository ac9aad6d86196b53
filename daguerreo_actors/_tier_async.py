"""The async tier: coroutine functions, on the engine's own event loop.

One loop, on one daemon thread, shared by every job of the process: async
tasks never take a thread each. It starts on first use and stops when no
coroutine has run on it for ``IDLE_TIMEOUT`` seconds, like the pool.

Cancellation is real here: a coroutine is wrapped in an asyncio Task, and
cancelling the ``concurrent.futures.Future`` that ``submit`` returns (which
``Attempt.abandon`` does through the attempt's handle) cancels that Task, so
the coroutine gets ``CancelledError`` at its next ``await``.

``SystemExit`` and ``KeyboardInterrupt`` raised by a coroutine would stop
the loop itself (asyncio re-raises them out of ``run_forever``), so they
travel wrapped in ``_Escaped`` and fail only their attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._tiers import Reporter, follow_future

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn

#: Seconds the loop stays up with nothing to run.
IDLE_TIMEOUT = 1.0


class EngineLoop:
    """A lazily started, self-stopping event loop thread."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._active = 0
        self._generation = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on the loop; returns a future that can cancel it."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._start()
            assert self._loop is not None
            self._active += 1
            loop = self._loop
        future = _TaskFuture(loop)
        try:
            loop.call_soon_threadsafe(future.start, coro)
        except BaseException:
            with self._lock:
                self._active -= 1
            coro.close()
            raise
        future.add_done_callback(self._finished)
        return future

    def retire_idle(self) -> bool:
        """Stop the loop now if nothing runs on it; True if it was stopped."""
        with self._lock:
            if self._loop is None or self._active:
                return False
            self._stop_locked()
            return True

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        self._generation += 1
        thread = threading.Thread(
            target=self._run,
            args=(loop,),
            name=f"daguerreo-loop-{self._generation}",
            daemon=True,
        )
        self._loop = loop
        self._thread = thread
        thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                # However the loop stopped (a BaseException escaping a
                # callback, say), the next submit starts a fresh one.
                if self._loop is loop:
                    self._loop = None
                    self._thread = None
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

    def _finished(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._active -= 1
            if self._active or self._loop is None:
                return
            loop, generation = self._loop, self._generation
        try:
            loop.call_soon_threadsafe(loop.call_later, self._idle_timeout, self._idle, generation)
        except RuntimeError:  # the loop is already closing
            pass

    def _idle(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation and not self._active and self._loop is not None:
                self._stop_locked()

    def _stop_locked(self) -> None:
        loop = self._loop
        assert loop is not None
        self._loop = None
        self._thread = None
        loop.call_soon_threadsafe(loop.stop)


class _TaskFuture(concurrent.futures.Future[Any]):
    """The future of a coroutine on the loop: done only when the coroutine is.

    ``asyncio.run_coroutine_threadsafe``'s future turns cancelled the moment
    it is cancelled, while a coroutine that swallows ``CancelledError`` runs
    on; the engine would count it stopped. Here ``cancel()`` only asks the
    asyncio Task to stop, and the future ends (cancelled, or with what the
    coroutine returned or raised after all) when the Task does, so such a
    coroutine stays a straggler until it returns.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = False

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """On the loop: run the coroutine as a Task."""
        task = self._loop.create_task(coro)
        self._task = task
        task.add_done_callback(self._task_done)
        if self._cancelling:
            task.cancel()

    def cancel(self) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._cancel_task)
        except RuntimeError:  # the loop closed: its tasks were cancelled with it
            pass
        return False  # not cancelled yet: that is the coroutine's to say

    def _cancel_task(self) -> None:
        self._cancelling = True
        if self._task is not None:
            self._task.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            super().cancel()
            return
        exc = task.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(task.result())


_loop: EngineLoop | None = None
_loop_lock = threading.Lock()


def shared_loop() -> EngineLoop:
    """The process-wide engine loop, created on first use."""
    global _loop
    if _loop is None:
        with _loop_lock:
            if _loop is None:
                _loop = EngineLoop()
    return _loop


def _forget_after_fork() -> None:
    # A forked child inherits the loop object but not its thread.
    global _loop, _loop_lock
    _loop = None
    _loop_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


class AsyncTier:
    """Coroutine functions, on the engine's shared event loop."""

    __slots__ = ()

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        try:
            value = fn(ctx, attempt.is_active)
        except BaseException as exc:  # noqa: BLE001
            report.raised(attempt, exc)
            return None
        self.run(attempt, value, report)
        return None

    def run(self, attempt: Attempt, value: Any, report: Reporter) -> None:
        """Await ``value`` (a coroutine, usually) on the loop, then report."""
        try:
            future = shared_loop().submit(_await(value))
        except BaseException as exc:  # noqa: BLE001
            report.raised(attempt, exc)
            return
        follow_future(future, attempt, report, unwrap=_unwrap)

    def close(self) -> None:
        pass


#: Stateless: one instance serves every job.
ASYNC = AsyncTier()


class _Escaped(Exception):  # noqa: N818 - a carrier, not an error of its own
    """Carries a SystemExit or KeyboardInterrupt out of a coroutine."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


async def _await(value: Any) -> Any:
    try:
        return await value if inspect.isawaitable(value) else value
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


def _unwrap(exc: BaseException) -> BaseException:
    return exc.original if isinstance(exc, _Escaped) else exc
