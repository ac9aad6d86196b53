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
block, so setting happens on the pool thread that hands the attempt over
and clearing on another pooled thread, never on the JobActor's.

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

from daguerreo_actors._pool import shared_pool
from daguerreo_actors._procs import check_result

if TYPE_CHECKING:
    from daguerreo_actors._messages import RunAttempt
    from daguerreo_actors._task_actor import TaskActor


class DaskBackend:
    """Runs attempts on a dask cluster; see the module docstring."""

    heavy = True  # submit serializes the ctx and talks to the scheduler

    def __init__(self, client: distributed.Client, job_id: str) -> None:
        self._client = client
        self._job_id = job_id

    def start(self, actor: TaskActor, message: RunAttempt) -> None:
        attempt = message.attempt
        name = f"daguerreo-{self._job_id}-{actor.node}-{attempt}"
        try:
            distributed.Event(name, client=self._client).set()
            if not actor.attach((None, name)):  # abandoned while we talked to the scheduler
                self._clear(name)
                actor.report_cancelled(attempt)
                return
            future = self._client.submit(
                run_on_worker,
                actor.fn,
                message.ctx,
                name,
                actor.name,
                pure=False,
                retries=0,
                key=f"{_key(actor.name)}-{attempt}-{uuid.uuid4().hex}",
            )
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            actor.report_raised(attempt, exc)
            self._clear(name)
            return
        future.add_done_callback(lambda done: self._done(actor, attempt, name, done))
        if not actor.attach((future, name)):
            self.cancel_handle(future, name)

    def _done(self, actor: TaskActor, attempt: int, name: str, future: Any) -> None:
        try:
            if future.cancelled():
                actor.report_cancelled(attempt)
                return
            try:
                # Done already; a timeout here would be distributed's own
                # (result(timeout=0) times out even on a finished future).
                result = future.result()
            except BaseException as exc:  # noqa: BLE001 - raised on the worker, or lost
                actor.report_raised(attempt, exc)
                return
            if isinstance(result, _NotRun):
                actor.report_cancelled(attempt)
            else:
                actor.report_returned(attempt, result)
        finally:
            self._clear(name)

    def cancel(self, actor: TaskActor) -> None:
        handle = actor.handle
        if isinstance(handle, tuple):
            self.cancel_handle(*handle)

    def cancel_handle(self, future: Any, name: str) -> None:
        self._clear(name)
        if future is None:
            return
        try:
            future.cancel()
        except Exception:  # noqa: BLE001 - the client may be closing
            pass

    def _clear(self, name: str) -> None:
        shared_pool().execute(_Clear(self._client, name))

    def close(self) -> None:
        pass


class _Clear:
    """Clears a cluster event from a pooled thread (it talks to the scheduler)."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: distributed.Client, name: str) -> None:
        self._client = client
        self._name = name

    def run(self) -> None:
        try:
            distributed.Event(self._name, client=self._client).clear()
        except Exception:  # noqa: BLE001 - a closed client: nothing to clean up
            pass


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "task"


def run_on_worker(
    fn: Callable[[Mapping[Any, Any], Callable[[], bool]], Any],
    ctx: Mapping[Any, Any],
    event_name: str,
    task: str,
) -> Any:
    """The worker side: ``is_active()`` asks the cluster-wide event."""
    event = distributed.Event(event_name)

    def is_active() -> bool:
        return bool(event.is_set())

    if not is_active():
        return _NotRun()
    result = fn(ctx, is_active)
    check_result(task, result)  # a clear error naming the key, not a bare PicklingError
    return result


class _NotRun:
    """Returned by a worker for an attempt abandoned before it began."""
