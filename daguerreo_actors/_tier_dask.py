"""The Dask tier: attempts on a ``distributed.Client``'s cluster.

``run(tasks, executor=client)`` hands every attempt to ``client.submit``
(``pure=False``, no Dask-level retries: retries are ours). The JobActor
keeps the state machine, the events and the guarantees.

``is_active()`` on a worker reads one ``distributed.Variable`` per job:
the names of the job's attempts that were abandoned (timeout, cancel, the
job's end). Abandons are rare and starts are not, so an attempt costs the
client no scheduler round trip of its own: a per-attempt ``Event``, set
before each submit and cleared after, cost about 1.1 ms of round trips per
attempt and half a chain's time (bench/DESIGN.md). The set is published
whole, newest last, from a pooled thread (talking to the scheduler can
block; never on the JobActor's). The job's end publishes a closing marker
(every attempt abandoned), and the variable is deleted once every future
of the job is done, so nothing is left behind on the cluster and no worker
polls a missing variable (the scheduler logs an error for each such read;
a worker that still does takes its attempt as abandoned). Any other error
reading it reaches the task, which fails and is retried: a scheduler that
cannot be reached is never taken for a cancel. An attempt whose name is
published before its code starts never starts.

A worker lost mid-task: with ``distributed.scheduler.allowed-failures`` set
to 0 the scheduler gives up on the task at once (``KilledWorker``), which
becomes an EXCEPTION of that attempt and is retried by us. With Dask's
default (3) the scheduler itself re-runs the task on another worker, and
daguerreo_actors sees one longer attempt.
"""

from __future__ import annotations

import threading
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
    """The attempt's name (published as abandoned on cancel) and, once submitted, its future."""

    __slots__ = ("future", "name", "tier")

    def __init__(self, tier: DaskTier, name: str) -> None:
        self.tier = tier
        self.name = name
        self.future: Any = None

    def cancel(self) -> None:
        # is_active() turns False on the worker; the code runs on until it
        # returns (followed, so its slot is freed then), or is killed.
        self.tier.abandon(self.name)

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
        #: The cluster variable holding the names of abandoned attempts.
        self._variable = f"daguerreo-{job_id}-abandoned"
        self._lock = threading.Lock()
        self._abandoned: list[str] = []
        self._published = 0  # how many of them the variable holds
        self._publish_lock = threading.Lock()  # one publisher at a time: newest last
        self._closed = False
        self._created = False
        self._deleted = False
        self._outstanding = 0  # futures of the job not done yet

    @property
    def client(self) -> distributed.Client:
        return self._client

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        name = f"{attempt.node}-{attempt.number}"
        handle = _DaskHandle(self, name)
        try:
            if not self._created and not self._create():  # the job ended meanwhile
                report.not_run(attempt)
                return None
            if not attempt.attach(handle):  # abandoned before its turn
                report.not_run(attempt)
                return None
            future = self._client.submit(
                run_on_worker,
                fn,
                ctx,
                self._variable,
                name,
                attempt.task,
                pure=False,
                retries=0,
                key=f"{_key(attempt.task)}-{attempt.number}-{uuid.uuid4().hex}",
            )
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            report.raised(attempt, exc)
            return None
        handle.future = future
        with self._lock:
            self._outstanding += 1
        future.add_done_callback(self._future_done)
        # Done already when called; a timeout here would be distributed's
        # own (result(timeout=0) times out even on a finished future).
        follow_future(future, attempt, report, handle=handle, get=lambda done: done.result())
        return None

    def _create(self) -> bool:
        """Set the variable before the job's first submit: one round trip per job.

        False if the job has ended first (nothing to create, nothing left behind).
        """
        with self._publish_lock:
            if self._closed:
                return False
            if not self._created:
                distributed.Variable(self._variable, client=self._client).set([])
                self._created = True
            return True

    def abandon(self, name: str) -> None:
        """Publish ``name`` as abandoned, from a pooled thread (it talks to the scheduler)."""
        with self._lock:
            if self._closed:
                return  # the closing marker says it for every attempt
            self._abandoned.append(name)
        shared_pool().execute(_Quietly(self._publish))

    def _publish(self) -> None:
        with self._publish_lock:
            with self._lock:
                if self._deleted or not self._created:
                    return
                names = [CLOSED] if self._closed else list(self._abandoned)
                if len(names) == self._published and not self._closed:
                    return  # a later publisher already sent these
            distributed.Variable(self._variable, client=self._client).set(names)
            self._published = len(names)

    def _future_done(self, _future: object) -> None:
        with self._lock:
            self._outstanding -= 1
            delete = self._closed and self._outstanding == 0
        if delete:
            shared_pool().execute(_Quietly(self._delete))

    def close(self) -> None:
        """The job has ended: publish the closing marker (every attempt reads as
        abandoned); the variable is deleted once every future of the job is done,
        so no worker polls a missing one (the scheduler logs each such read)."""
        with self._lock:
            self._closed = True
            delete = self._outstanding == 0
        shared_pool().execute(_Quietly(self._delete if delete else self._publish))

    def _delete(self) -> None:
        with self._publish_lock:  # after a publish under way, never before it
            if self._deleted or not self._created:
                return
            self._deleted = True
            # A send, not a round trip.
            distributed.Variable(self._variable, client=self._client).delete()


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


#: The variable's value once the job has ended: every attempt is abandoned.
CLOSED = "*closed*"


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "task"


def run_on_worker(
    fn: Callable[[Mapping[Any, Any], Callable[..., bool]], Any],
    ctx: Mapping[Any, Any],
    variable: str,
    name: str,
    task: str,
) -> Any:
    """The worker side: ``is_active()`` reads the job's abandoned attempts."""
    abandoned = distributed.Variable(variable)

    def is_active(progress: object = None) -> bool:
        # ``progress`` stays on the worker, like a process worker's. Any other
        # error (the scheduler unreachable) reaches the task: it fails and is
        # retried, never mistaken for a cancel.
        try:
            names = abandoned.get(timeout=0)
        except TimeoutError:  # gone: the job ended and its futures are done
            return False
        return name not in names and CLOSED not in names

    if not is_active():
        return NOT_RUN
    result = call_remotely(fn, ctx, is_active)
    pickle_result(task, result)  # a clear error naming the key, not a bare PicklingError
    return result
