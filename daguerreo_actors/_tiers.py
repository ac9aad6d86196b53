"""The seam between the engine and where an attempt's code runs: the tiers.

A TaskActor hands each attempt to its node's :class:`Tier` with
``start(attempt, fn, ctx, report)``, always on a pool thread (a tier's
start may block: a user executor's ``submit``, pickling, the network), never
on the JobActor's. The tier runs the code somewhere, attaches a typed
handle to the :class:`~daguerreo_actors._attempt.Attempt` (so an abandon
reaches the code: ``Attempt.abandon`` calls ``handle.cancel()``) and later
tells the :class:`Reporter` how it went, from whatever thread learns it:
``returned``, ``raised``, or ``not_run`` (abandoned before its code began, or
cancelled by us). Tiers know nothing of TaskActors or of the JobActor.

The tiers, one module each:

- ``_tier_thread.py``: the default; the function runs on the pool thread.
- ``_tier_executor.py``: any ``concurrent.futures.Executor`` (threads).
- ``_tier_process.py``: a ``ProcessPoolExecutor``; pickled by us, with
  ``is_active()`` read from shared memory.
- ``_tier_dask.py``: a ``distributed.Client``; ``is_active()`` from a
  cluster-wide event.
- ``_tier_async.py``: coroutine functions, on the engine's event loop.

:func:`follow_future` is the one way a tier turns a finished future into a
report; :data:`NOT_RUN` the one marker of an attempt that never ran.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from types import FunctionType
from typing import TYPE_CHECKING, Any, Protocol, cast

from daguerreo_actors._attempt import Attempt, Handle

if TYPE_CHECKING:
    from daguerreo_actors._ctx import CommitLog
    from daguerreo_actors._errors import TaskError
    from daguerreo_actors._options import JobOptions
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import Task, TaskFn


class Reporter(Protocol):
    """Where a tier reports an attempt's outcome (any thread)."""

    def returned(self, attempt: Attempt, value: Any, *, here: bool = False) -> Runnable | None:
        """The code returned ``value``.

        ``here``: the caller is the pool thread that ran the code, free
        once this returns; the engine may hand it work to run next.
        """
        ...

    def raised(
        self, attempt: Attempt, exc: BaseException, *, here: bool = False
    ) -> Runnable | None: ...

    def not_run(self, attempt: Attempt) -> None: ...


class Tier(Protocol):
    """Runs attempts somewhere; see the module docstring."""

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        """Run the attempt (on a pool thread); may hand back work for this thread."""
        ...

    def close(self) -> None:
        """The job has ended."""
        ...


class DaskClient(Protocol):
    """What ``run`` accepts as a dask cluster: a ``distributed.Client``."""

    def submit(self, func: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def gather(self, futures: Any, /, *args: Any, **kwargs: Any) -> Any: ...


class _NotRun:
    """What a tier's far side returns for an attempt that never ran."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "NOT_RUN"  # unpickles as this module's singleton

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN = _NotRun()


class FutureHandle:
    """A ``concurrent.futures.Future`` (or a dask one): cancel takes it out of its queue."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def cancel(self) -> None:
        try:
            self.future.cancel()
        except Exception:  # noqa: BLE001 - a closing client, a broken executor
            pass


def _now(future: Future[Any]) -> Any:
    return future.result(timeout=0)


def follow_future(
    future: Any,
    attempt: Attempt,
    report: Reporter,
    *,
    handle: Handle | None = None,
    get: Callable[[Any], Any] = _now,
    unwrap: Callable[[BaseException], BaseException] | None = None,
    decode: Callable[[Any], Any] | None = None,
) -> None:
    """Report what ``future`` ends with; cancel it if the attempt was abandoned meanwhile.

    ``get`` reads a done future's value, ``decode`` turns it into the
    attempt's value (e.g. unpickles it; may return :data:`NOT_RUN`),
    ``unwrap`` turns what it raised into the attempt's exception.
    """

    def done(finished: Any) -> None:
        if finished.cancelled():
            report.not_run(attempt)
            return
        try:
            value = get(finished)
            if decode is not None:
                value = decode(value)
        except BaseException as exc:  # noqa: BLE001 - raised where the code ran, or in transit
            report.raised(attempt, exc if unwrap is None else unwrap(exc))
            return
        if value is NOT_RUN:
            report.not_run(attempt)
        else:
            report.returned(attempt, value)

    future.add_done_callback(done)
    if not attempt.attach(handle if handle is not None else FutureHandle(future)):
        FutureHandle(future).cancel()


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


def is_tier(value: object) -> bool:
    """One of the engine's own tiers a user may pass (a ``ProcessTier``)."""
    from daguerreo_actors._tier_pebble import ProcessTier

    return isinstance(value, ProcessTier)


def is_dask_client(executor: object) -> bool:
    """Looks like a ``distributed.Client`` (checked without importing dask)."""
    cls = type(executor)
    return any(
        klass.__module__.split(".")[0] == "distributed" and klass.__name__ == "Client"
        for klass in cls.__mro__
    )


def _threads(interrupt: bool = False, virtual: bool = False) -> Tier:
    from daguerreo_actors._tier_thread import INTERRUPTING, THREADS, VIRTUAL_THREADS

    if virtual:
        return VIRTUAL_THREADS
    return INTERRUPTING if interrupt else THREADS


def tier_for(
    executor: object,
    job_id: str,
    nodes: int,
    *,
    interrupt: bool = False,
    virtual: bool = False,
    dask: Callable[[], dict[str, Any]] | None = None,
) -> Tier:
    """The tier of an ``executor`` (None: the engine's own pool threads).

    ``"processes"`` is the engine's default :class:`ProcessTier`; a tier
    made here for a ProcessTier, a process pool or a cluster belongs to one
    job (``close`` when it ends).
    """
    if executor is None:
        return _threads(interrupt, virtual)
    if isinstance(executor, str) or is_tier(executor):
        from daguerreo_actors._tier_pebble import PebbleTier, default_tier

        if executor == "processes":
            return default_tier(nodes)
        return PebbleTier(cast(Any, executor), nodes)
    if is_dask_client(executor):
        try:
            from daguerreo_actors._tier_dask import DaskTier
        except ImportError as exc:  # pragma: no cover - a Client without distributed?
            raise ImportError(
                "running on a dask cluster needs the dask extra: "
                "pip install 'daguerreo-actors[dask]'"
            ) from exc
        return DaskTier(cast(Any, executor), job_id, **(dask() if dask is not None else {}))
    # Imported only for this check: concurrent.futures.process pulls in
    # multiprocessing (about 10 ms).
    from concurrent.futures import ProcessPoolExecutor

    if isinstance(executor, ProcessPoolExecutor):
        from daguerreo_actors._tier_process import ProcessPoolTier

        return ProcessPoolTier(executor, nodes)
    if isinstance(executor, Executor):
        from daguerreo_actors._tier_executor import ExecutorTier

        return ExecutorTier(executor)
    raise TypeError(f"not an executor: {type(executor).__name__}")


def tiers_for(
    tasks: Sequence[Task], executor: object, job_id: str, options: JobOptions, virtual: bool
) -> tuple[Tier, ...]:
    """Each task's tier: its own executor, else the job's; one tier per executor.

    A tier is sized for every node the job can have: each mapped task may
    add up to ``max_map`` children (a process tier keeps a 16-byte slot of
    shared memory per node, allocated lazily by the OS).
    """
    made: dict[tuple[int, bool], Tier] = {}
    nodes = len(tasks) + options.max_map * sum(1 for task in tasks if task.map_over is not None)
    # Made only for a job on Dask: it reads every task.
    dask = functools.partial(_dask_settings, tasks, executor, options)
    tiers = []
    for task in tasks:
        if is_async(task.fn):
            # A coroutine function always runs on the engine's event loop.
            tiers.append(_async_tier())
            continue
        chosen = task.executor if task.executor is not None else executor
        key = (id(chosen), task.interrupt and chosen is None)
        tier = made.get(key)
        if tier is None:
            tier = made[key] = tier_for(
                chosen, job_id, nodes, interrupt=key[1], virtual=virtual, dask=dask
            )
        tiers.append(tier)
    return tuple(tiers)


def _dask_settings(tasks: Sequence[Task], executor: object, options: JobOptions) -> dict[str, Any]:
    """What a Dask tier sends back to the client (``_dask_ctx.py``): every value
    when something here reads them (log_values, a journal, a task on another
    tier), else a mapped task's input keys, else keys only."""
    everywhere = all(
        not is_async(task.fn)
        and is_dask_client(task.executor if task.executor is not None else executor)
        for task in tasks
    )
    want: bool | frozenset[Any] = frozenset(
        task.map_over for task in tasks if task.map_over is not None
    )
    if options.log_values or options.journal is not None or not everywhere:
        want = True
    return {"want": want, "gather": options.gather}


def ctx_log(tiers: Sequence[Tier], snapshot: Mapping[Any, Any]) -> CommitLog | None:
    """The job's cluster ctx (``_dask_ctx.py``) if a task runs on Dask, told the initial ctx."""
    for tier in tiers:
        cluster = getattr(tier, "cluster_ctx", None)
        if cluster is not None:
            cluster.initial(snapshot)
            return cast("CommitLog", cluster)
    return None


def placement_errors(tasks: Sequence[Task], executor: object, *, virtual: bool) -> list[TaskError]:
    """Tasks whose executor cannot do what they ask (all of them, for one error).

    A Dask worker cannot report heartbeats back; a virtual clock cannot
    reach code running on an executor (its ``clock.sleep`` would not be the
    job's), so a job on a virtual clock runs on the engine's threads.
    """
    from daguerreo_actors._errors import TaskError

    errors = []
    first_client: object = None
    for task in tasks:
        if is_async(task.fn):
            continue
        chosen = task.executor if task.executor is not None else executor
        if chosen is None:
            continue
        on_dask = is_dask_client(chosen)
        if on_dask and first_client is None:
            first_client = chosen
        if on_dask and chosen is not first_client:
            errors.append(
                TaskError(
                    "invalid-field",
                    task.name,
                    "field 'executor': a job runs on one Dask client (its outputs stay on "
                    "that cluster); give every task of the job the same client",
                )
            )
            continue
        if virtual:
            errors.append(
                TaskError(
                    "invalid-field",
                    task.name,
                    "field 'executor': a job on a VirtualClock runs on the engine's threads; "
                    "drop the executor (the job's or the task's) to test with a virtual clock",
                )
            )
        elif task.heartbeat is not None and is_dask_client(chosen):
            errors.append(
                TaskError(
                    "invalid-field",
                    task.name,
                    "field 'heartbeat': a Dask worker cannot report heartbeats; "
                    "run this task on threads or processes, or drop the heartbeat",
                )
            )
    return errors


def _async_tier() -> Tier:
    # Imported on first use: asyncio costs about 24 ms to import.
    from daguerreo_actors._tier_async import ASYNC

    return ASYNC
