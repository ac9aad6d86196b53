"""TaskActor: the actor of one DAG node, hosted on a shared dispatcher.

The JobActor creates a TaskActor when it dispatches a node (READY ->
RUNNING), or when it offers the node (below), and stops it when the node is
done, so live TaskActors are bounded by ``2 * max_concurrency``, not by the
DAG. A TaskActor is an actor in the actor model's own sense: its own mailbox
and state, one message at a time. It does not own an OS thread and is not a
``pykka.Actor``: pykka would start a thread (200 µs+) and register it in its
process-wide registry for every node. Instead ``tell`` schedules the mailbox
on a dispatcher:

- by default the shared :class:`~daguerreo_actors._pool.WorkerPool`; the
  task function then runs right on that pooled thread;
- with a backend (a user executor, processes, a dask cluster, the event
  loop for coroutine functions: see ``_backends.py``), the mailbox only
  hands the attempt to the backend, which reports back through
  ``report_returned`` / ``report_raised``; it runs on the JobActor's thread,
  or on the pool if handing over is heavy (pickling, network).

Message flow: ``RunAttempt`` in; out, one of ``Succeeded`` or
``ReturnedInvalid`` to the JobActor, or ``AttemptRaised`` to the supervisor
(which owns the retry decision). A dead receiver means the job has ended,
and the late report is dropped (logged at debug).

The attempt's fate is settled once, under the actor's lock: the attempt
either *finishes* (its function returned or raised, on the pool thread) or
is *abandoned* (by the JobActor, on a timeout or the job's end). A deadline
that loses that race to a finished attempt is ignored: the report is
already on its way. ``is_active()`` is True only while neither happened;
an attempt abandoned before its function started never starts.

Offers: so that a pool thread that finishes an attempt need not sleep until
the JobActor hands it the next one, the JobActor publishes the head of its
ready queue in :class:`Offers` (TaskActors created in advance, their
RunAttempt already in the mailbox). A thread whose attempt *finished*
(while still wanted) has freed a slot, so it may take the first offer, name
it in its ``Succeeded`` report and run it at once. The JobActor records
that start when it reads the report; it takes an offer back (``revoke``)
before starting the node any other way or when the job ends. Offers are a
prefix of the ready FIFO and leave it only from the left, so the queue
order and the concurrency limit hold exactly as without them.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import immutables
import pykka

from daguerreo_actors._backends import ASYNC, Backend
from daguerreo_actors._logging import log_outside
from daguerreo_actors._messages import (
    AttemptRaised,
    InternalFailure,
    ReturnedInvalid,
    RunAttempt,
    Succeeded,
)
from daguerreo_actors._task import TaskFn

Dispatch = Callable[["TaskActor"], None]

_ACTIVE = 0
_FINISHED = 1
_ABANDONED = 2


class Offers:
    """READY nodes published by the JobActor for slot-freeing threads to take.

    ``ctx`` is the JobActor's latest ctx snapshot (an immutable map): the
    thread that takes an offer hands the started attempt that ctx updated
    with its own just-finished output, which is what the JobActor would have
    handed it after merging that output.
    """

    __slots__ = ("_lock", "_queue", "ctx")

    def __init__(self, ctx: immutables.Map[Any, Any]) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[TaskActor, int]] = deque()
        self.ctx = ctx

    def publish(self, offers: list[tuple[TaskActor, int]]) -> None:
        """Offer (actor, attempt) pairs, in ready-queue order."""
        with self._lock:
            self._queue.extend(offers)

    def take(self) -> tuple[TaskActor, int] | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def revoke(self, node: int) -> bool:
        """Take back the offer of ``node``: False if a thread took it first.

        ``node`` is always the oldest offer the JobActor has not seen taken;
        offers leave from the left, so if it is not first it was taken.
        """
        with self._lock:
            queue = self._queue
            if queue and queue[0][0].node == node:
                queue.popleft()
                return True
            return False


class TaskActor:
    """Runs the attempts of one node; see the module docstring."""

    __slots__ = (
        "_backend",
        "_dispatch",
        "_lock",
        "_mailbox",
        "_offers",
        "_scheduled",
        "_state",
        "fn",
        "handle",
        "job_id",
        "job_ref",
        "name",
        "node",
        "supervisor_ref",
    )

    def __init__(
        self,
        node: int,
        name: str,
        fn: TaskFn,
        *,
        job_id: str,
        job_ref: pykka.ActorRef[Any],
        supervisor_ref: pykka.ActorRef[Any],
        dispatch: Dispatch,
        backend: Backend | None = None,
        offers: Offers | None = None,
    ) -> None:
        self.node = node
        self.name = name
        self.fn = fn
        self.job_id = job_id
        self.job_ref = job_ref
        self.supervisor_ref = supervisor_ref
        self._dispatch = dispatch
        self._backend = backend
        #: What the backend needs to cancel the running attempt.
        self.handle: Any = None
        self._offers = offers
        self._state = _ACTIVE
        self._lock = threading.Lock()
        self._mailbox: deque[RunAttempt] = deque()
        self._scheduled = False

    # -- the actor interface ---------------------------------------------

    def tell(self, message: RunAttempt) -> None:
        with self._lock:
            self._mailbox.append(message)
            if self._scheduled:
                return
            self._scheduled = True
        self._dispatch(self)

    def accept(self, message: RunAttempt) -> None:
        """Like ``tell``, but the calling thread will run the mailbox itself."""
        with self._lock:
            self._mailbox.append(message)
            self._scheduled = True

    def run(self) -> TaskActor | None:
        """Drain the mailbox on the dispatcher's thread.

        Returns the offered actor this thread took, to be run next.
        """
        lock = self._lock
        mailbox = self._mailbox
        taken: TaskActor | None = None
        while True:
            with lock:
                if not mailbox:
                    self._scheduled = False
                    return taken
                message = mailbox.popleft()
            try:
                taken = self._receive(message) or taken
            except BaseException as exc:  # noqa: BLE001 - a bug of ours: fail the job, never hang
                self._internal_error(exc)

    def is_active(self) -> bool:
        """True while the current attempt is still wanted and running."""
        return self._state == _ACTIVE

    def abandon(self) -> bool:
        """The attempt is no longer wanted (timeout or job end).

        Returns False if it had already finished: its report is on the way.
        Otherwise the backend, if any, carries the abandon to where the
        attempt runs (a flag in shared memory, a cluster-wide event, a
        cancelled coroutine).
        """
        with self._lock:
            if self._state == _FINISHED:
                return False
            self._state = _ABANDONED
        if self._backend is not None and self.handle is not None:
            self._backend.cancel(self)
        return True

    def attach(self, handle: Any, before: Callable[[], None] | None = None) -> bool:
        """Record where the running attempt is, unless it was abandoned meanwhile.

        A backend calls this once it has handed the attempt over (``before``
        runs under the same lock, e.g. to raise the attempt's flag). False
        means the attempt was abandoned (or already finished) while it was
        being handed over: the backend must then cancel it itself, since
        ``abandon`` found no handle to cancel.
        """
        with self._lock:
            if self._state != _ACTIVE:
                return False
            if before is not None:
                before()
            self.handle = handle
            return True

    def stop(self) -> None:
        """The node is done with this actor."""
        self._state = _ABANDONED
        if self._backend is not None and self.handle is not None:
            self._backend.cancel(self)

    def rearm(self) -> None:
        """Reuse this (idle) actor for the node's next attempt, after an exception."""
        self._state = _ACTIVE

    # -- handling ---------------------------------------------------------

    def _finish(self) -> bool:
        with self._lock:
            if self._state != _ACTIVE:
                return False
            self._state = _FINISHED
            return True

    def _receive(self, message: RunAttempt) -> TaskActor | None:
        if self._state != _ACTIVE:
            return None
        if self._backend is not None:
            self._backend.start(self, message)
            return None
        try:
            result = self.fn(message.ctx, self.is_active)
        except BaseException as exc:  # noqa: BLE001 - user code must not take us down
            self._report_raised(message.attempt, exc)
            return None
        if inspect.iscoroutine(result):
            # A function that returned a coroutine (say, a wrapper around an
            # async def): run it where coroutines run, cancellably.
            self._backend = ASYNC
            ASYNC.run(self, message.attempt, result)
            return None
        return self._report_returned(message.attempt, result, self._offers)

    # -- reports from backends (any thread) ---------------------------------

    def report_returned(self, attempt: int, result: Any) -> None:
        """A backend's attempt returned ``result``."""
        try:
            self._report_returned(attempt, result, None)
        except BaseException as exc:  # noqa: BLE001 - never kill a backend's thread
            self._internal_error(exc)

    def report_raised(self, attempt: int, exc: BaseException) -> None:
        """A backend's attempt raised ``exc``."""
        try:
            self._report_raised(attempt, exc)
        except BaseException as error:  # noqa: BLE001
            self._internal_error(error)

    def report_cancelled(self, attempt: int) -> None:
        """A backend cancelled the attempt because we abandoned it."""
        if self._finish():
            # Not by us (we abandon first): the coroutine cancelled itself.
            error = RuntimeError(f"task {self.name!r}: its coroutine was cancelled")
            self._send(self.supervisor_ref, AttemptRaised(self.node, attempt, error))
        else:
            self._late(attempt)

    def _report_returned(
        self, attempt: int, result: Any, offers: Offers | None
    ) -> TaskActor | None:
        try:
            if type(result) is dict or isinstance(result, Mapping):
                # A copy: the task may go on mutating what it returned.
                output = dict(result)
            else:
                if self._finish():
                    self._send(self.job_ref, ReturnedInvalid(self.node, attempt, result))
                else:
                    self._late(attempt)
                return None
        except BaseException as exc:  # noqa: BLE001 - a Mapping that fails to copy
            self._report_raised(attempt, exc)
            return None
        if not self._finish():
            self._late(attempt)
            return None
        offer = offers.take() if offers is not None else None
        if offer is None:
            self._send(self.job_ref, Succeeded(self.node, attempt, output))
            return None
        taken, taken_attempt = offer
        assert offers is not None
        ctx = offers.ctx.update(output) if output else offers.ctx
        taken.accept(RunAttempt(taken_attempt, ctx))
        self._send(
            self.job_ref,
            Succeeded(self.node, attempt, output, taken.node, time.monotonic()),
        )
        return taken

    def _report_raised(self, attempt: int, exc: BaseException) -> None:
        if self._finish():
            self._send(self.supervisor_ref, AttemptRaised(self.node, attempt, exc))
        else:
            self._late(attempt)

    def _send(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            self._late(getattr(message, "attempt", 0))

    def _internal_error(self, exc: BaseException) -> None:
        try:
            self.job_ref.tell(InternalFailure(f"task_actor {self.name!r}", exc))
        except pykka.ActorDeadError:
            pass

    def _late(self, attempt: int) -> None:
        log_outside(
            logging.DEBUG,
            "late_result_discarded",
            job_id=self.job_id,
            task=self.name,
            attempt=attempt,
            reason="attempt abandoned (timed out, or the job ended)",
        )
