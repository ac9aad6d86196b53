"""The Dask tier: attempts on a ``distributed.Client``'s cluster.

``run(tasks, executor=client)`` hands every attempt to ``client.submit``
(``pure=False``, no Dask-level retries: retries are ours). The JobActor
keeps the state machine, the events and the guarantees.

Where the data lives: an attempt's output stays in its future, on the
worker that made it, and a task's ctx is rebuilt on its worker from the
outputs before it (``_dask_ctx.py``). The worker tells the client the
output's keys by an event (``_dask_events.py``), not by returning the value:
no fetch per task; the attempt is reported when the event arrives (it
comes just before Dask marks the task finished). Values the client needs (all of
them with ``log_values``, a journal or another tier in the job; a mapped
task's input; a result that is no mapping) are fetched from the future.
A failure comes back with the future (Dask sends it).

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

import pickle
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import distributed

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._cache_reads import ReadTracker
from daguerreo_actors._dask_ctx import (
    GATHER_TIMEOUT,
    ClusterCtx,
    Entry,
    OnCluster,
    Released,
    merge_entries,
)
from daguerreo_actors._dask_events import publish, subscribe, unsubscribe
from daguerreo_actors._pickling import call_remotely, pickle_result
from daguerreo_actors._pool import shared_pool
from daguerreo_actors._tiers import NOT_RUN, FutureHandle, Reporter

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn


class _DaskHandle:
    """The attempt's name (published as abandoned on cancel) and, once submitted, its future."""

    __slots__ = ("arrived", "attempt", "future", "name", "report", "submitted", "tier")

    def __init__(self, tier: DaskTier, name: str, attempt: Attempt, report: Reporter) -> None:
        self.tier = tier
        self.name = name
        self.attempt = attempt
        self.report = report
        self.future: Any = None
        #: The worker's event has reached the client (set on its event loop).
        self.arrived = threading.Event()
        #: ``future`` is set (the worker's event may come back before submit returns).
        self.submitted = threading.Event()

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

    def __init__(
        self,
        client: distributed.Client,
        job_id: str,
        *,
        want: bool | frozenset[Any] = False,
        gather: bool = True,
    ) -> None:
        self._client = client
        self._job_id = job_id
        #: Which output values come back to the client: all, these keys, none.
        self._want = want
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
        #: Attempts submitted and not reported yet, by name.
        self._running: dict[str, _DaskHandle] = {}
        #: Reported attempts whose futures hold an output: let go at the end.
        self._handles: list[_DaskHandle] = []
        self._released = False
        self.cluster_ctx = ClusterCtx(client, gather=gather)
        self.cluster_ctx.future_of = _future_of
        self.cluster_ctx.on_release = self._release

    @property
    def client(self) -> distributed.Client:
        return self._client

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        name = f"{attempt.node}-{attempt.number}"
        handle = _DaskHandle(self, name, attempt, report)
        counted = False
        if isinstance(ctx, ReadTracker):
            ctx.everything = True  # read on the worker: its reads are not seen
        try:
            if not self._created and not self._create():  # the job ended meanwhile
                report.not_run(attempt)
                return None
            if not attempt.attach(handle):  # abandoned before its turn
                report.not_run(attempt)
                return None
            base, entries = self.cluster_ctx.snapshot(attempt.ctx_commits, attempt.task)
            # Registered before the submit: its event may come back first. No
            # lock held across it (the client's loop thread takes ours).
            self._running[name] = handle
            with self._lock:  # counted first: close() must not delete the variable under it
                self._outstanding += 1
            counted = True
            handle.future = self._client.submit(
                run_on_worker,
                fn,
                base,
                entries,
                (self._variable, name, attempt.task, self._job_id, self._want),
                pure=False,
                retries=0,
                key=f"{_key(attempt.task)}-{attempt.number}-{uuid.uuid4().hex}",
            )
        except Released:  # the job has ended: never starts
            report.not_run(attempt)
            return None
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            handle.submitted.set()
            self._claim(name)
            if counted:
                self._future_done()
            report.raised(attempt, exc)
            return None
        handle.submitted.set()
        handle.future.add_done_callback(lambda future: self._done(handle, future))
        return None

    # -- reports: the worker's event, or the future's end ------------------------

    def received(self, name: str, payload: bytes) -> None:
        """The worker's event (on the client's event loop): reported on a pool thread.

        At once, not at the future's end: waiting for Dask's done callback
        (the loop, then its callback thread, then ours) cost about 1 ms per
        task (wide x2.76 of ``client.get`` against x2.31). A worker lost in
        the moment between its event and the task's end loses the output as
        one lost after it (README, "Dask: where the data lives").
        """
        handle = self._running.get(name)  # one read: no lock on the loop thread
        if handle is not None:
            handle.arrived.set()
            shared_pool().execute(_Quietly(lambda: self._event(name, payload)))

    def _claim(self, name: str) -> _DaskHandle | None:
        """The one report of an attempt: the first to claim it makes it."""
        with self._lock:
            return self._running.pop(name, None)

    def _event(self, name: str, payload: bytes) -> None:
        handle = self._claim(name)
        if handle is None:
            return
        attempt, report = handle.attempt, handle.report
        try:
            kind, keys, values = pickle.loads(payload)
            if kind == "not_run":
                report.not_run(attempt)
                self._let_go(handle, always=True)
                return
            if not handle.submitted.wait(SUBMIT_WAIT):
                raise TimeoutError(f"client.submit did not return in {SUBMIT_WAIT} s")
            future = handle.future
            holds = kind == "fetch" or bool(keys)  # its future holds an output
            if holds:
                self._hold(handle)
            if kind == "fetch":  # every value wanted here, or a value that is no mapping
                output = future.result(timeout=GATHER_TIMEOUT)
            else:
                fetched = values or {}
                output = {
                    key: fetched[key] if key in fetched else OnCluster(handle, key) for key in keys
                }
        except BaseException as exc:  # noqa: BLE001 - unpickling, the fetch: the attempt's
            report.raised(attempt, exc)
            self._let_go(handle, always=True)
            return
        report.returned(attempt, output)
        # Nothing to keep (no keys), or the job ended meanwhile: the output goes.
        self._let_go(handle, always=not holds)

    def _done(self, handle: _DaskHandle, future: Any) -> None:
        """The future's end (Dask's callback thread)."""
        self._future_done()
        status = future.status
        if status == "finished":
            if not handle.arrived.is_set():
                shared_pool().execute(_Quietly(lambda: self._finished(handle)))
            return  # the event's report lets it go (_event)
        claimed = self._claim(handle.name)
        if claimed is not None:
            if status == "cancelled":
                claimed.report.not_run(claimed.attempt)
            else:
                try:
                    exc = future.exception()
                except BaseException as error:  # noqa: BLE001 - a closing client, say
                    exc = error
                claimed.report.raised(claimed.attempt, exc)
            self._let_go(handle, always=True)

    def _finished(self, handle: _DaskHandle) -> None:
        """Finished, and no event seen (it comes first, on the same streams):
        wait a little for it, then fetch the value."""
        if handle.arrived.wait(FETCH_AFTER):
            return  # its report is on its way (_event)
        claimed = self._claim(handle.name)
        if claimed is None:
            return
        try:
            value = handle.future.result(timeout=GATHER_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - in transit
            claimed.report.raised(claimed.attempt, exc)
            self._let_go(handle, always=True)
            return
        if value is NOT_RUN:
            claimed.report.not_run(claimed.attempt)
            self._let_go(handle, always=True)
            return
        self._hold(handle)  # the ctx log refers to its future
        claimed.report.returned(claimed.attempt, value)
        self._let_go(handle)

    def _release(self) -> None:
        """The job's end: let go of every finished attempt's future (its output)."""
        with self._lock:
            self._released = True
            handles, self._handles = self._handles, []
        for handle in handles:
            if handle.future is not None and handle.future.done():
                handle.future = None

    def _hold(self, handle: _DaskHandle) -> None:
        """Its future holds an output the job may read: let go of it at the end."""
        with self._lock:
            if not self._released:
                self._handles.append(handle)

    def _let_go(self, handle: _DaskHandle, *, always: bool = False) -> None:
        """After its report: drop the future if nothing is to be read from it, or
        the job has ended (a straggler's output goes)."""
        with self._lock:
            if always or self._released:
                handle.future = None

    def _create(self) -> bool:
        """Set the variable before the job's first submit: one round trip per job.

        False if the job has ended first (nothing to create, nothing left behind).
        """
        with self._publish_lock:
            if self._closed:
                return False
            if not self._created:
                subscribe(self._client, self._job_id, self)
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

    def _future_done(self) -> None:
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
            # Every future is done: no event of this job is still to come.
            unsubscribe(self._client, self._job_id)
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


def _future_of(attempt: Attempt) -> Any:
    handle = attempt.handle
    return handle.future if type(handle) is _DaskHandle else None


#: How long an event waits for the submit of its attempt to return (seconds).
SUBMIT_WAIT = 60.0

#: How long a finished future waits for its worker's event before the value
#: is fetched instead (seconds): the event comes first, on the same streams.
FETCH_AFTER = 2.0


def run_on_worker(
    fn: Callable[[Mapping[Any, Any], Callable[..., bool]], Any],
    base: Any,
    entries: list[Entry],
    about: tuple[str, str, str, str, bool | frozenset[Any]],
) -> Any:
    """The worker side: rebuild the ctx, run, keep the output here, tell the client its keys.

    ``is_active()`` reads the job's abandoned attempts.
    """
    variable, name, task, job_id, want = about
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
        publish(job_id, name, "not_run")
        return NOT_RUN
    result = call_remotely(fn, merge_entries(base, entries), is_active)
    # A clear error naming the key, not a bare PicklingError when Dask moves it.
    pickle_result(task, result)
    if (
        want is True
        or not isinstance(result, Mapping)
        or (want and any(key in result for key in want))
    ):
        # The client fetches the value: the event stays small (the scheduler
        # keeps the topic's last events).
        publish(job_id, name, "fetch")
        return result
    output = dict(result)
    publish(job_id, name, "ok", list(output))
    return output
