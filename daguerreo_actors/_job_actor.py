"""The JobActor: the actor shell around one job's :class:`Scheduler`.

A pykka ThreadingActor (daemon thread), one per job. It owns the job's
state machine (the scheduler core), and it is the only actor that changes
it. On start it spawns its Supervisor and one ListenerProxy per listener,
then feeds the core every message it receives and carries out what the core
decided:

- nodes the core moved READY -> RUNNING: create (or, after an exception,
  reuse) the node's TaskActor, ``tell`` it ``RunAttempt`` with the ctx
  snapshot, and for a task with a timeout arm its deadline in the supervisor;
- a node the core finished: stop its TaskActor; on a timeout, abandon it
  (its ``is_active()`` turns False) so a retry gets a fresh one;
- the transitions the core recorded: turn them into structlog entries and,
  if anyone listens, into events sent as one ``EventBatch`` per proxy;
- the end of the job: abandon every running attempt, send the last events,
  stop the proxies behind them and the supervisor, resolve the ``Job``
  future, stop itself.

Messages in: ``Succeeded`` / ``ReturnedInvalid`` (TaskActors),
``RetryDecision``, ``DeadlinePassed``, ``JobDeadlinePassed``,
``InternalFailure`` (Supervisor), ``CancelJob`` (``Job.cancel``). It only
ever ``tell``s; it never waits on another actor. Any error of its own ends
the job FAILED with an :class:`InternalError`, never a hang.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import pykka

from daguerreo_actors._backends import ASYNC, Backend, backend_for, is_async
from daguerreo_actors._errors import InternalError
from daguerreo_actors._events import Event, JobEvent, TaskEvent
from daguerreo_actors._graph import Graph
from daguerreo_actors._job import Job, JobResult
from daguerreo_actors._listeners import Backlog, Listener, ListenerProxy
from daguerreo_actors._logging import TransitionLog
from daguerreo_actors._messages import (
    ArmDeadline,
    CancelJob,
    DeadlinePassed,
    EventBatch,
    InternalFailure,
    JobDeadlinePassed,
    RetryDecision,
    ReturnedInvalid,
    RunAttempt,
    Succeeded,
)
from daguerreo_actors._pool import shared_pool
from daguerreo_actors._scheduler import Scheduler
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._supervisor import Supervisor
from daguerreo_actors._task import Task
from daguerreo_actors._task_actor import Offers, TaskActor
from daguerreo_actors._text import safe_repr

#: How many offers per slot the JobActor keeps published. A thread that
#: takes offers back to back runs ahead of the JobActor, which reads its
#: reports in batches; offers run dry when the chain outruns this depth.
#: Measured on 10k no-op tasks, max_concurrency=2 (docs/benchmarks.md): at
#: 2 offers per slot a thread still slept on every fifth task, at 16 on one
#: in seventeen.
OFFERS_PER_SLOT = 16


class JobActor(pykka.ThreadingActor):
    """Runs one job; see the module docstring."""

    use_daemon_thread: ClassVar[bool] = True

    def __init__(
        self,
        job: Job,
        tasks: Sequence[Task],
        graph: Graph,
        *,
        ctx: Mapping[Any, Any],
        job_deadline: float | None,
        run_started: float,
        log_values: bool = False,
        max_retries: int,
        max_concurrency: int,
        executor: object,
        listeners: Sequence[Listener],
    ) -> None:
        super().__init__()
        self._job = job
        self._job_id = job.id
        self._tasks = tasks
        self._graph = graph
        self._names = graph.names
        self._job_deadline = job_deadline
        self._executor = executor
        self._listeners = listeners
        self._max_retries = tuple(
            max_retries if t.max_retries is None else t.max_retries for t in tasks
        )
        # inf means "no timeout"; keep only real deadlines.
        self._timeouts: tuple[float | None, ...] = tuple(
            t.timeout if t.timeout is not None and t.timeout != float("inf") else None
            for t in tasks
        )
        self._has_timeouts = any(t is not None for t in self._timeouts)
        self._log = TransitionLog(job.id, log_values=log_values)
        self._run_started = run_started
        # When each node's current attempt started (monotonic), for the
        # durations in the log; a list, not a dict: nothing to clean up.
        self._started_at: list[float] = [0.0] * len(tasks)
        # Nodes a pool thread started before we read its report: their
        # RUNNING event is stamped with the real start, not our reading time.
        self._claimed_at: dict[int, float] = {}
        # Offers let a pool thread that finished an attempt start the next
        # one without waiting for us; a user executor runs its own queue.
        self._offers: Offers | None = None
        self._core = Scheduler(
            graph,
            max_concurrency=max_concurrency,
            max_retries=self._max_retries,
            continue_on_failure=[t.continue_on_failure for t in tasks],
            ctx=ctx,
            record=bool(listeners) or self._log.debug_enabled,
            decide_end=job._claim_end,
            revoke=self._revoke,
        )
        if executor is None:
            self._offers = Offers(self._core.ctx)
        self._actors: dict[int, TaskActor] = {}
        self._offered: dict[int, TaskActor] = {}
        self._proxies: list[pykka.ActorRef[Any]] = []
        # Made here, in the caller's thread, so that Job.wait_for_listeners()
        # and Job.dropped_events work as soon as run() returns.
        self._backlogs: list[Backlog] = [Backlog() for _ in listeners]
        self._listeners_done = [threading.Event() for _ in listeners]
        job._listeners_done = tuple(self._listeners_done)
        job._backlogs = tuple(self._backlogs)
        self._supervisor: pykka.ActorRef[Any] | None = None
        # Where each node's attempts run: None is the engine's own pool; a
        # coroutine function always runs on the engine's event loop.
        self._backend = backend_for(executor, job.id, len(tasks))
        self._backends: tuple[Backend | None, ...] = tuple(
            ASYNC if is_async(t.fn) else self._backend for t in tasks
        )
        self._handlers: dict[type, Callable[[Any], None]] = {
            Succeeded: self._on_succeeded,
            ReturnedInvalid: self._on_invalid,
            RetryDecision: self._on_retry_decision,
            DeadlinePassed: self._on_deadline,
            JobDeadlinePassed: self._on_job_deadline,
            CancelJob: self._on_cancel,
            InternalFailure: self._on_internal_failure,
        }
        job._actor_ref = self.actor_ref

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        # pykka uses only put/get/empty; SimpleQueue does those in C.
        return queue.SimpleQueue()

    # -- pykka hooks ----------------------------------------------------------

    def on_start(self) -> None:
        try:
            for listener, done, backlog in zip(
                self._listeners, self._listeners_done, self._backlogs, strict=True
            ):
                self._proxies.append(ListenerProxy.start(listener, self._job_id, done, backlog))
            self._supervisor = Supervisor.start(
                self.actor_ref, self._max_retries, self._job_deadline
            )
            self._carry_out(self._core.start())
        except BaseException as exc:  # noqa: BLE001
            self._internal_error("job_actor.start", exc)

    def _handle_receive(self, message: Any) -> Any:
        # Our messages skip pykka's four isinstance checks for proxy calls;
        # anything else (its stop message) goes the usual way.
        handler = self._handlers.get(type(message))
        if handler is None:
            return super()._handle_receive(message)
        try:
            handler(message)
        except BaseException as exc:  # noqa: BLE001
            self._internal_error("job_actor", exc)
        return None

    def on_receive(self, message: Any) -> None:
        self._internal_error("job_actor", TypeError(f"unexpected message {message!r}"))

    # -- handlers -------------------------------------------------------------

    def _on_succeeded(self, message: Succeeded) -> None:
        claimed = message.claimed
        started = self._core.completed(message.node, message.attempt, message.result, claimed)
        if claimed is not None and started is not None:
            # The reporting thread already runs the offer it took.
            actor = self._offered.pop(claimed)
            self._actors[claimed] = actor
            self._started_at[claimed] = message.claimed_at
            if self._core.record:  # else no RUNNING event is made to stamp
                self._claimed_at[claimed] = message.claimed_at
            self._arm(claimed, message.claimed_at)
        self._after_outcome(message.node, message.attempt, started, release=True)

    def _on_invalid(self, message: ReturnedInvalid) -> None:
        started = self._core.invalid_result(message.node, message.attempt, message.value)
        self._after_outcome(message.node, message.attempt, started, release=True)

    def _on_retry_decision(self, message: RetryDecision) -> None:
        started = self._core.failed(message.node, message.attempt, message.exception, message.retry)
        # A retry after an exception reuses the node's (now idle) TaskActor.
        self._after_outcome(message.node, message.attempt, started, release=not message.retry)

    def _on_deadline(self, message: DeadlinePassed) -> None:
        node = message.node
        if not self._core.is_running(node, message.attempt):
            return  # the attempt had already ended
        actor = self._actors.get(node)
        if actor is not None and not actor.abandon():
            return  # it finished in time; its report is on the way
        # The attempt's thread may still be busy in the task function: the
        # actor is abandoned (is_active() turns False) and a retry gets a
        # fresh one.
        self._actors.pop(node, None)
        started = self._core.timed_out(node, message.attempt, message.retry)
        if started is not None:
            self._carry_out(started)

    def _after_outcome(
        self, node: int, attempt: int, started: list[int] | None, *, release: bool
    ) -> None:
        if started is None:
            self._log.late_result(self._names[node], attempt)
            return
        if release:
            actor = self._actors.pop(node, None)
            if actor is not None:
                actor.stop()
        self._carry_out(started)

    def _on_job_deadline(self, _message: JobDeadlinePassed) -> None:
        if self._core.end(JobState.TIMED_OUT):
            self._carry_out([])

    def _on_cancel(self, _message: CancelJob) -> None:
        if self._core.end(JobState.CANCELLED):
            self._carry_out([])

    def _on_internal_failure(self, message: InternalFailure) -> None:
        self._internal_error(message.where, message.exception)

    # -- carrying out the core's decisions ------------------------------------

    def _carry_out(self, started: list[int]) -> None:
        core = self._core
        # Flushed first: a transition out of RUNNING is logged with the
        # duration of the attempt that ended, before _start records when
        # the node's next attempt began.
        if core.transitions or core.job_transitions:
            self._flush()
        if started:
            self._start(started, time.monotonic())
        offers = self._offers
        if offers is not None and not core.ended:
            offers.ctx = core.ctx
            if core.ready:
                self._offer()
        if core.ended:
            self._finish()

    def _offer(self) -> None:
        core = self._core
        nodes = core.offer(OFFERS_PER_SLOT * core.max_concurrency)
        if not nodes:
            return
        attempts = core.attempts
        published = []
        for node in nodes:
            actor = self._offered[node] = self._new_actor(node)
            published.append((actor, attempts[node] + 1))
        assert self._offers is not None
        self._offers.publish(published)

    def _revoke(self, node: int) -> bool:
        return self._offers is None or self._offers.revoke(node)

    def _start(self, nodes: list[int], now: float) -> None:
        core = self._core
        ctx = core.ctx
        attempts = core.attempts
        actors = self._actors
        offered = self._offered
        started_at = self._started_at
        for node in nodes:
            attempt = attempts[node]
            started_at[node] = now
            if self._has_timeouts:
                self._arm(node, now)
            actor = offered.pop(node, None)  # an offer we took back
            if actor is not None:
                actors[node] = actor
            else:
                actor = actors.get(node)
                if actor is None:
                    actor = actors[node] = self._new_actor(node)
                else:
                    actor.rearm()  # the same node's actor, idle after an exception
            actor.tell(RunAttempt(attempt, ctx))

    def _new_actor(self, node: int) -> TaskActor:
        task = self._tasks[node]
        backend = self._backends[node]
        # Handing an attempt to a light backend is a submit: do it here.
        # Running the function itself, or a heavy hand-over, goes to the pool.
        inline = backend is not None and not backend.heavy
        return TaskActor(
            node,
            task.name,
            task.fn,
            job_id=self._job_id,
            job_ref=self.actor_ref,
            supervisor_ref=self._supervisor_ref(),
            dispatch=_run_inline if inline else shared_pool().execute,
            backend=backend,
            offers=self._offers,
        )

    def _arm(self, node: int, started_at: float) -> None:
        timeout = self._timeouts[node]
        if timeout is not None:
            self._supervisor_ref().tell(
                ArmDeadline(node, self._core.attempts[node], started_at + timeout)
            )

    def _supervisor_ref(self) -> pykka.ActorRef[Any]:
        if self._supervisor is None:
            raise InternalError("the supervisor was not started")
        return self._supervisor

    def _flush(self) -> None:
        core = self._core
        transitions = core.take_transitions()
        job_transitions = core.take_job_transitions()
        names = self._names
        log = self._log
        events: list[Event] | None = [] if self._proxies else None
        now = time.time()
        mono = time.monotonic()
        started_at = self._started_at
        job_id = self._job_id
        job_iter = iter(job_transitions)
        pending = next(job_iter, None)
        claimed_at = self._claimed_at
        for position, (node, old, new, attempt, payload) in enumerate(transitions):
            while pending is not None and pending[0] <= position:
                self._emit_job(pending[1], pending[2], now, mono, events)
                pending = next(job_iter, None)
            ts = now
            if claimed_at and new is TaskState.RUNNING and node in claimed_at:
                ts = now - (mono - claimed_at.pop(node))
            if log.enabled_for(new):
                log.task(
                    names[node],
                    old,
                    new,
                    attempt,
                    payload,
                    ts,
                    duration=mono - started_at[node] if old is TaskState.RUNNING else None,
                    dependencies=(
                        [names[dep] for dep in self._graph.dependencies[node]]
                        if old is TaskState.UNSCHEDULED
                        else None
                    ),
                )
            if events is not None:
                if isinstance(payload, BaseException):
                    events.append(
                        TaskEvent(job_id, names[node], old, new, attempt, ts, None, payload)
                    )
                else:
                    events.append(TaskEvent(job_id, names[node], old, new, attempt, ts, payload))
        while pending is not None:
            self._emit_job(pending[1], pending[2], now, mono, events)
            pending = next(job_iter, None)
        if events:
            self._send_events(events)

    def _send_events(self, events: list[Event]) -> None:
        # The job's final JobEvent is sent whatever the listener's backlog.
        final = 1 if self._core.ended else 0
        droppable = len(events) - final
        batch = EventBatch(tuple(events))
        for position, (proxy, backlog) in enumerate(
            zip(self._proxies, self._backlogs, strict=True)
        ):
            dropped_before = backlog.dropped
            admitted = backlog.admit(droppable, final)
            if admitted == droppable:
                message = batch
            else:
                message = EventBatch(tuple(events[:admitted]) + tuple(events[droppable:]))
                if dropped_before == 0:
                    self._log.listener_dropped(position, backlog.dropped, backlog.limit)
            try:
                proxy.tell(message)
            except pykka.ActorDeadError:
                backlog.consumed(admitted + final)

    def _emit_job(
        self, old: JobState, new: JobState, now: float, mono: float, events: list[Event] | None
    ) -> None:
        self._job._set_state(new)
        self._log.job(old, new, now, mono - self._run_started if new.is_terminal else None)
        if events is not None:
            events.append(JobEvent(self._job_id, old, new, now))

    def _finish(self) -> None:
        core = self._core
        failed = core.failed_task
        self._resolve(
            core.job_state,
            core.final_ctx(),
            failed_task=None if failed is None else self._names[failed],
            failure_reason=core.failure_reason,
            exception=core.exception,
            invalid_result=core.invalid_result_value,
        )

    def _resolve(self, state: JobState, ctx: dict[Any, Any], **failure: Any) -> None:
        """Abandon what runs, stop the children, resolve the Job, stop."""
        for actor in [*self._actors.values(), *self._offered.values()]:
            try:
                actor.abandon()
            except BaseException as exc:  # noqa: BLE001 - resolve the job whatever happens
                self._log.internal_error("abandon", exc)
        self._actors.clear()
        self._offered.clear()
        result = self._result(state, ctx, **failure)
        self._report_drops()
        self._stop_children()
        # Listeners whose proxy never started (a failed start) have nothing
        # to consume: they are done.
        for done in self._listeners_done[len(self._proxies) :]:
            done.set()
        self._close_backends()
        self._job._resolve(result)
        self.stop()

    def _result(self, state: JobState, ctx: dict[Any, Any], **failure: Any) -> JobResult:
        names, core = self._names, self._core
        return JobResult(
            state=state,
            ctx=ctx,
            task_states=MappingProxyType(dict(zip(names, core.states, strict=True))),
            attempts=MappingProxyType(dict(zip(names, core.attempts, strict=True))),
            **failure,
        )

    def _close_backends(self) -> None:
        for backend in {b for b in self._backends if b is not None}:
            try:
                backend.close()
            except Exception as exc:  # noqa: BLE001 - cleanup must not fail the job
                self._log.internal_error("backend.close", exc)

    def _report_drops(self) -> None:
        for position, backlog in enumerate(self._backlogs):
            if backlog.dropped:
                self._log.listener_dropped(position, backlog.dropped, backlog.limit, final=True)

    def _stop_children(self) -> None:
        # Queued behind the last EventBatch: each proxy stops once its
        # listener has consumed every event.
        for proxy in self._proxies:
            try:
                proxy.stop(block=False)
            except pykka.ActorDeadError:
                pass
        if self._supervisor is not None:
            try:
                self._supervisor.stop(block=False)
            except pykka.ActorDeadError:
                pass

    def _internal_error(self, where: str, exc: BaseException) -> None:
        """End the job FAILED with an InternalError; never raise."""
        error = InternalError(f"internal error in {where}: {safe_repr(exc)}")
        error.__cause__ = exc
        try:
            self._log.internal_error(where, exc)
            if not self._core.ended:
                self._core.end(JobState.FAILED, exception=error)
                self._carry_out([])
            elif not self._job.done():
                # The core ended the job but carrying that out broke midway.
                self._finish()
        except BaseException:  # noqa: BLE001 - the bookkeeping itself is broken
            self._resolve_bare(error)

    def _resolve_bare(self, exc: BaseException) -> None:
        """The last resort: resolve the Job first, then clean up what can be."""
        if self._job.done():
            return
        self._job._resolve(
            self._result(JobState.FAILED, dict(self._core.initial_ctx), exception=exc)
        )
        for cleanup in (self._stop_children, self._close_backends):
            try:
                cleanup()
            except BaseException:  # noqa: BLE001 - nothing more can be done
                pass
        for actor in [*self._actors.values(), *self._offered.values()]:
            try:
                actor.abandon()
            except BaseException:  # noqa: BLE001
                pass
        for done in self._listeners_done:
            done.set()
        self.stop()


def _run_inline(actor: TaskActor) -> None:
    # The TaskActor's mailbox only hands the attempt to its backend, so it
    # is run right here on the JobActor's thread.
    actor.run()
