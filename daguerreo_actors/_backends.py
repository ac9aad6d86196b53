"""Where an attempt runs: the execution tiers behind a TaskActor.

By default a TaskActor calls its task function right on the pooled thread
that runs its mailbox (``_task_actor.py``). Every other tier is a
``Backend``: the TaskActor hands it the attempt, the backend starts it
somewhere else and later reports the outcome back through the actor
(``report_returned`` / ``report_raised``, from whatever thread it learns it
on), and ``cancel`` carries an abandon (timeout, job end) to where the code
runs:

- ``ExecutorBackend``: any ``concurrent.futures.Executor`` (threads);
  cancel can only flip ``is_active()``.
- ``ProcessBackend`` (``_procs.py``): a ``ProcessPoolExecutor``; function and
  ctx are pickled, ``is_active()`` reads a flag in shared memory.
- ``DaskBackend`` (``_dask.py``): a ``distributed.Client``; ``is_active()``
  reads a ``distributed.Event`` on the cluster.
- ``AsyncBackend``: coroutine functions, on the engine's event loop
  (``_aio.py``); cancel really cancels the coroutine.

A backend belongs to one job; ``close`` runs when the job ends.
"""

from __future__ import annotations

import inspect
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import FunctionType
from typing import TYPE_CHECKING, Any, Protocol, cast

from daguerreo_actors._aio import shared_loop

if TYPE_CHECKING:
    from daguerreo_actors._messages import RunAttempt
    from daguerreo_actors._task_actor import TaskActor


class DaskClient(Protocol):
    """What ``run`` accepts as a dask cluster: a ``distributed.Client``."""

    def submit(self, func: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def gather(self, futures: Any, /, *args: Any, **kwargs: Any) -> Any: ...


class Backend(Protocol):
    #: True if ``start`` may block or do heavy work (pickling, network):
    #: the actor's mailbox then runs on the shared pool, not on the
    #: JobActor's thread.
    heavy: bool

    def start(self, actor: TaskActor, message: RunAttempt) -> None: ...

    def cancel(self, actor: TaskActor) -> None: ...

    def close(self) -> None: ...


def is_async(fn: object) -> bool:
    """A coroutine function (``async def``, or a partial or callable of one)."""
    if type(fn) is FunctionType:
        # The common case, read straight off the code object: inspect's
        # checks cost about a microsecond per task at 100k tasks.
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def is_dask_client(executor: object) -> bool:
    """Looks like a ``distributed.Client`` (checked without importing dask)."""
    cls = type(executor)
    return any(
        klass.__module__.split(".")[0] == "distributed" and klass.__name__ == "Client"
        for klass in cls.__mro__
    )


def backend_for(executor: object, job_id: str, nodes: int) -> Backend | None:
    """The backend of a job's ``executor`` (None: the engine's own threads)."""
    if executor is None:
        return None
    if is_dask_client(executor):
        try:
            from daguerreo_actors._dask import DaskBackend
        except ImportError as exc:  # pragma: no cover - a Client without distributed?
            raise ImportError(
                "running on a dask cluster needs the dask extra: "
                "pip install 'daguerreo-actors[dask]'"
            ) from exc
        return DaskBackend(cast(Any, executor), job_id)
    if isinstance(executor, ProcessPoolExecutor):
        from daguerreo_actors._procs import ProcessBackend

        return ProcessBackend(executor, nodes)
    if isinstance(executor, Executor):
        return ExecutorBackend(executor)
    raise TypeError(f"not an executor: {type(executor).__name__}")


class ExecutorBackend:
    """A thread-based ``concurrent.futures.Executor``."""

    heavy = False

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def start(self, actor: TaskActor, message: RunAttempt) -> None:
        attempt = message.attempt
        try:
            future = self._executor.submit(actor.fn, message.ctx, actor.is_active)
        except BaseException as exc:  # noqa: BLE001 - e.g. a shut-down executor
            actor.report_raised(attempt, exc)
            return
        _follow(actor, attempt, future)

    def cancel(self, actor: TaskActor) -> None:
        # A running thread cannot be stopped (is_active() turning False is
        # all there is), but an attempt still queued in the executor is
        # taken out, so nothing starts after an abandon.
        _cancel_future(actor)

    def close(self) -> None:
        pass


class AsyncBackend:
    """Coroutine functions, on the engine's shared event loop."""

    heavy = False

    def start(self, actor: TaskActor, message: RunAttempt) -> None:
        try:
            value = actor.fn(message.ctx, actor.is_active)
        except BaseException as exc:  # noqa: BLE001
            actor.report_raised(message.attempt, exc)
            return
        self.run(actor, message.attempt, value)

    def run(self, actor: TaskActor, attempt: int, value: Any) -> None:
        """Await ``value`` (a coroutine, usually) on the loop, then report."""
        try:
            future = shared_loop().submit(_await(value))
        except BaseException as exc:  # noqa: BLE001
            actor.report_raised(attempt, exc)
            return
        _follow(actor, attempt, future)

    def cancel(self, actor: TaskActor) -> None:
        # Cancels the asyncio Task: CancelledError at its next await.
        _cancel_future(actor)

    def close(self) -> None:
        pass


#: Stateless: one instance serves every job.
ASYNC = AsyncBackend()


class _Escaped(Exception):  # noqa: N818 - a carrier, not an error of its own
    """Carries a SystemExit or KeyboardInterrupt out of a coroutine.

    asyncio re-raises those two out of the event loop itself, which would
    stop the engine's loop for every job; wrapped, they fail only the
    attempt that raised them, like in every other tier.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


async def _await(value: Any) -> Any:
    try:
        return await value if inspect.isawaitable(value) else value
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


def _follow(actor: TaskActor, attempt: int, future: Future[Any]) -> None:
    """Report the future's outcome; cancel it if the attempt was abandoned meanwhile."""
    future.add_done_callback(lambda done: _report(actor, attempt, done))
    if not actor.attach(future):
        future.cancel()


def _cancel_future(actor: TaskActor) -> None:
    future = actor.handle
    if isinstance(future, Future):
        future.cancel()


def _report(actor: TaskActor, attempt: int, future: Future[Any]) -> None:
    if future.cancelled():
        actor.report_cancelled(attempt)
        return
    try:
        result = future.result(timeout=0)
    except _Escaped as escaped:
        actor.report_raised(attempt, escaped.original)
        return
    except BaseException as exc:  # noqa: BLE001
        actor.report_raised(attempt, exc)
        return
    actor.report_returned(attempt, result)
