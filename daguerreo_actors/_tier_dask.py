"""The Dask tier: attempts on a ``distributed.Client``'s cluster.

``run(tasks, executor=client)`` hands every attempt to ``client.submit``
(``pure=False``, no Dask-level retries: retries are ours). The JobActor
keeps the state machine, the events and the guarantees.

``is_active()`` on a worker reads a ``distributed.Event`` named after the
job, node and attempt: the event is *set* while the attempt is wanted, and
cleared when it is abandoned (timeout, cancel, the job's end) or done. A
cleared event with no waiters is forgotten by the scheduler, so nothing is
left behind on the cluster. The event is set before the task is submitted,
so a worker never sees it unset too early. Talking to the scheduler can
block, so setting happens on the pool thread that starts the attempt and
clearing on another pooled thread, never on the JobActor's.

A worker lost mid-task: with ``distributed.scheduler.allowed-failures`` set
to 0 the scheduler gives up on the task at once (``KilledWorker``), which
becomes an EXCEPTION of that attempt and is retried by us. With Dask's
default (3) the scheduler itself re-runs the task on another worker, and
daguerreo_actors sees one longer attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import distributed

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._pickling import call_remotely, pickle_result
from daguerreo_actors._pool import shared_pool
from daguerreo_actors._tiers import NOT_RUN, FutureHandle, Reporter, follow_future

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn


class _DaskHandle:
    """The attempt's cluster event (cleared on cancel) and, once submitted, its future."""

    __slots__ = ("future", "name", "tier")

    def __init__(self, tier: DaskTier, name: str) -> None:
        self.tier = tier
        self.name = name
        self.future: Any = None

    def cancel(self) -> None:
        # is_active() turns False on the worker; the code runs on until it
        # returns (followed, so its slot is freed then), or is killed.
        self.tier.clear(self.name)

    def kill(self) -> None:
        """After ``kill_after``: cancel the future with ``force``, from a pooled thread.

        The scheduler forgets the task and the engine stops waiting for it;
        the worker's thread cannot be stopped and runs the code on until it
        returns (its result is dropped).
        """
        future = self.future
        if future is not None:
            client = self.tier.client
            shared_pool().execute(
                _Quietly(lambda: client.cancel(future, force=True), FutureHandle(future).cancel)
            )


class DaskTier:
    """Runs attempts on a dask cluster; see the module docstring."""

    def __init__(self, client: distributed.Client, job_id: str) -> None:
        self._client = client
        self._job_id = job_id

    @property
    def client(self) -> distributed.Client:
        return self._client

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        name = f"daguerreo-{self._job_id}-{attempt.node}-{attempt.number}"
        handle = _DaskHandle(self, name)
        try:
            distributed.Event(name, client=self._client).set()
            if not attempt.attach(handle):  # abandoned while we talked to the scheduler
                self.clear(name)
                report.not_run(attempt)
                return None
            future = self._client.submit(
                run_on_worker,
                fn,
                ctx,
                name,
                attempt.task,
                pure=False,
                retries=0,
                key=f"{_key(attempt.task)}-{attempt.number}-{uuid.uuid4().hex}",
            )
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            report.raised(attempt, exc)
            self.clear(name)
            return None
        handle.future = future
        future.add_done_callback(lambda _done: self.clear(name))
        # Done already when called; a timeout here would be distributed's
        # own (result(timeout=0) times out even on a finished future).
        follow_future(future, attempt, report, handle=handle, get=lambda done: done.result())
        return None

    def clear(self, name: str) -> None:
        """Clear a cluster event, from a pooled thread (it talks to the scheduler)."""
        client = self._client
        shared_pool().execute(_Quietly(lambda: distributed.Event(name, client=client).clear()))

    def close(self) -> None:
        pass


class _Quietly:
    """A call to the scheduler, on a pool thread; a closed or closing client is no error
    (``fallback`` runs instead, if given)."""

    __slots__ = ("_call", "_fallback")

    def __init__(self, call: Callable[[], Any], fallback: Callable[[], Any] | None = None) -> None:
        self._call = call
        self._fallback = fallback

    def run(self) -> None:
        try:
            self._call()
        except Exception:  # noqa: BLE001 - a closed client: nothing to clean up
            if self._fallback is not None:
                self._fallback()


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "task"


def run_on_worker(
    fn: Callable[[Mapping[Any, Any], Callable[..., bool]], Any],
    ctx: Mapping[Any, Any],
    event_name: str,
    task: str,
) -> Any:
    """The worker side: ``is_active()`` asks the cluster-wide event."""
    event = distributed.Event(event_name)

    def is_active(progress: object = None) -> bool:
        # ``progress`` stays on the worker, like a process worker's.
        return bool(event.is_set())

    if not is_active():
        return NOT_RUN
    result = call_remotely(fn, ctx, is_active)
    pickle_result(task, result)  # a clear error naming the key, not a bare PicklingError
    return result
