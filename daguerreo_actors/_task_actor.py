"""TaskActor: the actor of one DAG node, hosted on a shared dispatcher.

The JobActor creates a TaskActor when it dispatches a node (READY ->
RUNNING) and stops it when the node is done, so live TaskActors are bounded
by ``max_concurrency``, not by the DAG. A TaskActor is an actor in the
actor model's own sense: its own mailbox and state, one message at a time.
It does not own an OS thread and is not a ``pykka.Actor``: pykka would
start a thread (200 µs+) and register it in its process-wide registry for
every node. Instead ``tell`` schedules the mailbox on a dispatcher:

- by default the shared :class:`~daguerreo_actors._pool.WorkerPool`; the
  task function then runs right on that pooled thread;
- with a user ``executor``, the JobActor's own thread (a mailbox run there
  only submits ``fn`` to the executor and returns).

Message flow: ``RunAttempt`` in; out, one of ``Succeeded`` or
``ReturnedInvalid`` to the JobActor, or ``AttemptRaised`` to the
supervisor (which owns the retry decision). Reports are plain ``tell``s;
a dead receiver means the job has ended, and the late report is dropped
(logged at debug).

``is_active()`` reads a flag the JobActor clears out of band through
:meth:`TaskActor.abandon` (on timeout or job end): the actor's thread may
be busy inside the task function, so a message could not reach it. An
attempt abandoned before its function started never starts.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any

import pykka
import structlog

from daguerreo_actors._messages import (
    AttemptRaised,
    ReturnedInvalid,
    RunAttempt,
    Succeeded,
)
from daguerreo_actors._task import TaskFn

_log = structlog.get_logger("daguerreo_actors")

Dispatch = Callable[["TaskActor"], None]


class TaskActor:
    """Runs the attempts of one node; see the module docstring."""

    __slots__ = (
        "_active",
        "_dispatch",
        "_executor",
        "_lock",
        "_mailbox",
        "_scheduled",
        "fn",
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
        executor: Executor | None,
    ) -> None:
        self.node = node
        self.name = name
        self.fn = fn
        self.job_id = job_id
        self.job_ref = job_ref
        self.supervisor_ref = supervisor_ref
        self._dispatch = dispatch
        self._executor = executor
        self._active = True
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

    def run(self) -> None:
        """Drain the mailbox; called by the dispatcher's thread."""
        lock = self._lock
        mailbox = self._mailbox
        while True:
            with lock:
                if not mailbox:
                    self._scheduled = False
                    return
                message = mailbox.popleft()
            self._receive(message)

    def is_active(self) -> bool:
        """True while the current attempt is still wanted."""
        return self._active

    def abandon(self) -> None:
        """The current attempt is no longer wanted (timeout or job end)."""
        self._active = False
        with self._lock:
            self._mailbox.clear()

    stop = abandon

    # -- handling ---------------------------------------------------------

    def _receive(self, message: RunAttempt) -> None:
        if not self._active:
            return
        if self._executor is not None:
            self._submit(message)
            return
        try:
            result = self.fn(message.ctx, self.is_active)
        except BaseException as exc:  # noqa: BLE001 - user code must not take us down
            self._report_raised(message.attempt, exc)
            return
        self._report_returned(message.attempt, result)

    def _submit(self, message: RunAttempt) -> None:
        assert self._executor is not None
        attempt = message.attempt
        try:
            future = self._executor.submit(self.fn, message.ctx, self.is_active)
        except BaseException as exc:  # noqa: BLE001 - e.g. a shut-down executor
            self._report_raised(attempt, exc)
            return

        def done(future: Future[Any]) -> None:
            try:
                result = future.result(timeout=0)
            except BaseException as exc:  # noqa: BLE001
                self._report_raised(attempt, exc)
                return
            self._report_returned(attempt, result)

        future.add_done_callback(done)

    def _report_returned(self, attempt: int, result: Any) -> None:
        try:
            if isinstance(result, Mapping):
                # A copy: the task may go on mutating what it returned.
                message: Succeeded | ReturnedInvalid = Succeeded(self.node, attempt, dict(result))
            else:
                message = ReturnedInvalid(self.node, attempt, result)
        except BaseException as exc:  # noqa: BLE001 - a Mapping that fails to copy
            self._report_raised(attempt, exc)
            return
        self._send(self.job_ref, message, attempt)

    def _report_raised(self, attempt: int, exc: BaseException) -> None:
        self._send(self.supervisor_ref, AttemptRaised(self.node, attempt, exc), attempt)

    def _send(self, ref: pykka.ActorRef[Any], message: Any, attempt: int) -> None:
        if self._active:
            try:
                ref.tell(message)
                return
            except pykka.ActorDeadError:
                pass
        _log.debug(
            "late_result_discarded",
            job_id=self.job_id,
            task=self.name,
            attempt=attempt,
            reason="attempt abandoned (timed out, or the job ended)",
        )
