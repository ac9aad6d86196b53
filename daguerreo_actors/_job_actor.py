"""The JobActor: the actor shell around one job's :class:`Scheduler`.

One per job, and it owns no thread: it is a :class:`MailboxActor`
(``_mailbox.py``), its mailbox drained by the thread that brings it work (a
pool thread that just finished an attempt, ``run()``, ``Job.cancel()``) or
by the shared pool. It owns the job's state machine (the scheduler core)
and is the only one that changes it: it feeds the core every message it
receives and carries out what the core decided:

- nodes the core moved READY -> RUNNING: make each an
  :class:`~daguerreo_actors._attempt.Attempt`, hand it with the ctx
  snapshot to the node's TaskActor, arm its deadline on the job's clock. The
  first node started by a drain on a pool thread that is free afterwards is
  run by that thread (no hand-off for a chain), the others go to the pool;
- the head of the ready queue: publish it as offers (``_offers.py``);
- a node the core finished: drop its TaskActor; on a timeout, abandon the
  attempt (its ``is_active()`` turns False);
- the transitions the core recorded: hand them to the outbox
  (``_outbox.py``), which makes the log entries and the listeners' events;
- the end of the job: one resolve routine (:meth:`JobActor._resolve`).

Messages in: see ``_messages.py``. Reports come through the commit
methods (``_commit.py``), called on the task's own thread: they settle the
attempt's fate, merge a result into the ctx snapshot and leave the report
in the mailbox. No user code ever runs in the JobActor's drain. Any error
of its own ends the job FAILED with an :class:`InternalError`, never a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._ctx import CtxBook, restored_ctx
from daguerreo_actors._errors import InternalError
from daguerreo_actors._job import Job
from daguerreo_actors._map_shell import MapShell
from daguerreo_actors._messages import (
    ActorLost,
    CacheHit,
    CacheMiss,
    CancelJob,
    CodeReturned,
    DeadlinePassed,
    HeartbeatCheck,
    InternalFailure,
    Invalid,
    JobDeadlinePassed,
    KillDue,
    Raised,
    RetryDue,
    Start,
    Succeeded,
)
from daguerreo_actors._offers import OFFERS_PER_SLOT, Offers
from daguerreo_actors._options import JobOptions
from daguerreo_actors._outbox import Outbox
from daguerreo_actors._result import KeyConflict
from daguerreo_actors._retry import delays
from daguerreo_actors._scheduler import Scheduler, retry_allowed
from daguerreo_actors._states import JobState
from daguerreo_actors._task_actor import RunAttempt, TaskActor
from daguerreo_actors._tiers import Tier, ctx_log, tiers_for

if TYPE_CHECKING:
    from daguerreo_actors._graph import Graph
    from daguerreo_actors._listeners import ListenerLink
    from daguerreo_actors._logging import TransitionLog
    from daguerreo_actors._task import Task


class JobActor(MapShell):
    """Runs one job; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_actors",
        "_attempts",
        "_beats",
        "_claimed_at",
        "_clock",
        "_conflicts",
        "_core",
        "_delay",
        "_fns",
        "_graph",
        "_handlers",
        "_has_timeouts",
        "_job_deadline",
        "_max_map",
        "_max_retries",
        "_names",
        "_offered",
        "_offers",
        "_on_conflict",
        "_outbox",
        "_restored",
        "_retries",
        "_started_at",
        "_tasks",
        "_tiers",
        "_timeouts",
        "_timers",
        "job",
        "peak_task_actors",
    )

    def __init__(
        self,
        job_id: str,
        tasks: Sequence[Task],
        graph: Graph,
        *,
        ctx: dict[Any, Any],
        options: JobOptions,
        log: TransitionLog,
        links: Sequence[ListenerLink],
    ) -> None:
        super().__init__()
        self.job = Job(job_id, self, links)
        # Lists: a mapped task's children are appended (``_map_shell.py``).
        self._tasks = list(tasks)
        self._fns = [t.fn for t in tasks]
        self._max_map = options.max_map
        self._graph = graph
        self._names = graph.names
        clock = self._clock = options.clock
        self._job_deadline = options.job_deadline
        self._retries = list(options.retries)
        self._max_retries = [r.max_retries for r in options.retries]
        self._delay = delays(self._retries, graph.names, options.seed)
        # inf means "no timeout"; keep only real deadlines.
        self._timeouts: list[float | None] = [
            t.timeout if t.timeout is not None and t.timeout != float("inf") else None
            for t in tasks
        ]
        self._has_timeouts = any(t is not None for t in self._timeouts)
        self._core = Scheduler(
            graph,
            max_concurrency=options.max_concurrency,
            max_retries=self._max_retries,
            continue_on_failure=[t.continue_on_failure for t in tasks],
            run_if=[t.run_if for t in tasks],
            on_failure=options.on_failure,
            priorities=[t.priority for t in tasks],
            overlap=[t.overlap for t in tasks],
            cache=[t.cache for t in tasks] if options.journal is not None else None,
            mapped=[t.map_over is not None for t in tasks],
            resources=[t.resources for t in tasks],
            capacity=options.capacity,
            ctx=ctx,
            record=bool(links) or log.debug_enabled or options.journal is not None,
            decide_end=self.job._claim_end,
            revoke=self._revoke,
        )
        self._on_conflict = options.on_conflict
        self._conflicts: list[KeyConflict] = []
        self._book = CtxBook.initial(
            restored_ctx(ctx, options.restored), track_writers=options.on_conflict != "ignore"
        )
        self._journal, self._committing = options.journal, 0
        self._restored = options.restored
        executor = options.executor
        virtual = getattr(clock, "virtual", False) is True
        self._tiers: list[Tier] = list(tiers_for(tasks, executor, job_id, options, virtual))
        self._ctx_log = ctx_log(self._tiers, self._book.snapshot)
        # Offers need threads that run attempts themselves: the pool's. On a
        # virtual clock none, so that every start goes through the books.
        self._offers = Offers(self._lock) if executor is None and not virtual else None
        if virtual:
            clock.attach(self)  # type: ignore[attr-defined]
        self._attempts: dict[int, Attempt] = {}  # the running attempt of each node
        self._actors: dict[int, TaskActor] = {}  # the TaskActor of each running node
        self._offered: dict[int, tuple[TaskActor, Attempt]] = {}
        self._started_at = [0.0] * len(tasks)  # of each node's latest attempt
        # Nodes a pool thread started before we read its report: their
        # RUNNING event is stamped with the real start, not our reading time.
        self._claimed_at: dict[int, float] = {}
        self._timers = clock.timers(self._timers_lost)
        self._outbox = Outbox(
            job_id, graph, log, clock, links, options.started, self.job._set_state, self._journal
        )
        self._resolved = False
        self._stragglers = {}
        self._stopped = threading.Condition(self._lock)
        self._kill_timers = None
        self._beats = [t.heartbeat is not None for t in tasks]
        #: The most TaskActors this job held at once (see ``_offers.py``).
        self.peak_task_actors = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            Start: self._on_start,
            Succeeded: self._on_succeeded,
            Raised: self._on_raised,
            Invalid: self._on_invalid,
            DeadlinePassed: self._on_deadline,
            JobDeadlinePassed: self._on_job_deadline,
            CancelJob: self._on_cancel,
            ActorLost: self._on_lost,
            InternalFailure: self._on_internal_failure,
            KillDue: self._on_kill_due,
            HeartbeatCheck: self._on_heartbeat,
            RetryDue: self._on_retry_due,
            CodeReturned: self._on_code_returned,
            CacheHit: self._on_cache_hit,
            CacheMiss: self._on_cache_miss,
        }

    def start(self) -> None:
        """Start the job (on ``run()``'s thread)."""
        if self._job_deadline is not None:
            self._timers.call_at(self._job_deadline, self._job_deadline_passed)
        self.tell_here(Start())

    # -- handling (the drain) -----------------------------------------------

    def _receive(self, message: Any) -> None:
        try:
            self._handlers[type(message)](message)
        except BaseException as exc:  # noqa: BLE001 - a bug of ours: fail the job, never hang
            self._internal_error("job_actor", exc)

    def _on_start(self, _message: Start) -> None:
        self._carry_out(self._core.start(self._restored))

    def _on_succeeded(self, message: Succeeded) -> None:
        attempt, taken = message.attempt, message.taken
        node = attempt.node
        core = self._core
        started = core.completed(
            node, attempt.number, message.output, None if taken is None else taken.node
        )
        if started is None:
            self._late_report(attempt)
            return
        # Only a report that claims an offer can be stale and still start something.
        current = taken is None or self._attempts.get(node) is attempt
        if current:  # else cancelled in flight: late, but the offer it took has started
            self._attempts.pop(node, None)
            self._actors.pop(node, None)
            if attempt.progress is not None:  # rare: no call on the per-task path
                self._outbox.ended(attempt)
            if message.conflicts:
                self._record_conflicts(attempt.task, message.conflicts)
        if taken is not None:
            claimed = taken.node
            actor, offered = self._offered.pop(claimed)
            if offered is not taken:
                raise InternalError(f"node {claimed} was taken with another attempt")
            self._actors[claimed] = actor
            self._attempts[claimed] = taken
            self._started_at[claimed] = taken.started_at
            if core.record:  # else no RUNNING event is made to stamp
                self._claimed_at[claimed] = taken.started_at
            self._arm(taken)
        if not current:
            self._late_report(attempt)
        self._carry_out(started)

    def _on_raised(self, message: Raised) -> None:
        attempt = message.attempt
        node = attempt.node
        retry = message.retryable and retry_allowed(attempt.number, self._max_retries[node])
        delay = self._delay(node, attempt.number) if retry else 0.0
        started = self._core.failed(node, attempt.number, message.exception, retry, delay)
        self._after_failure(attempt, started, retry)

    def _on_invalid(self, message: Invalid) -> None:
        attempt = message.attempt
        started = self._core.invalid_result(
            attempt.node, attempt.number, message.value, message.reason
        )
        self._after_failure(attempt, started, False)

    def _on_deadline(self, message: DeadlinePassed) -> None:
        attempt = message.attempt
        if self._attempts.get(attempt.node) is attempt and attempt.deadline is not None:
            self._time_out(attempt, at=attempt.deadline, reason="deadline")

    def _time_out(self, attempt: Attempt, *, at: float, reason: str) -> None:
        node = attempt.node
        if not self._give_up(attempt, at):
            return  # it finished in time: its report is on the way
        retry = self._retries[node].policy.retry_timeouts and retry_allowed(
            attempt.number, self._max_retries[node]
        )
        delay = self._delay(node, attempt.number) if retry else 0.0
        # The node's TaskActor may still be busy in the abandoned code: a
        # retry gets a fresh one.
        self._actors.pop(node, None)
        started = self._core.timed_out(node, attempt.number, retry, delay, reason)
        with self._lock:
            running = attempt.straggling()
        if started is not None and not running:
            # Its code never started, or is already done: nothing to wait for.
            started += self._core.code_returned(node, attempt.number) or []
        self._after_failure(attempt, started, retry)

    def _after_failure(self, attempt: Attempt, started: list[int] | None, retry: bool) -> None:
        if started is None:
            self._late_report(attempt)
            return
        self._attempts.pop(attempt.node, None)
        if attempt.progress is not None:  # rare: no call on the per-task path
            self._outbox.ended(attempt)
        if not retry:
            self._actors.pop(attempt.node, None)
        self._carry_out(started)

    def _on_retry_due(self, message: RetryDue) -> None:
        started = self._core.retry_due(message.node, message.attempt)
        if started is not None:
            self._carry_out(started)

    def _on_code_returned(self, message: CodeReturned) -> None:
        attempt = message.attempt
        started = self._core.code_returned(attempt.node, attempt.number)
        if started is not None:
            self._carry_out(started)
        if not self._stragglers:
            self._stragglers_gone()

    def _job_deadline_passed(self) -> None:
        self.tell(JobDeadlinePassed())

    def _on_job_deadline(self, _message: JobDeadlinePassed) -> None:
        if self._core.end(JobState.TIMED_OUT):
            self._carry_out([])

    def _on_cancel(self, _message: CancelJob) -> None:
        if self._core.end(JobState.CANCELLED):
            self._carry_out([])

    def _timers_lost(self, reason: str) -> None:
        self.tell(ActorLost(reason))

    def listener_lost(self, reason: str) -> None:
        self.tell(ActorLost(reason))

    def _on_lost(self, message: ActorLost) -> None:
        error = InternalError(f"the job was cancelled: {message.reason}")
        self._outbox.log.internal_error("actor_lost", error)
        if self._core.end(JobState.CANCELLED, error):
            self._carry_out([])

    def _on_internal_failure(self, message: InternalFailure) -> None:
        self._internal_error(message.where, message.exception)

    # -- carrying out the core's decisions ------------------------------------

    def _carry_out(self, started: list[int]) -> None:
        core = self._core
        if core.expansions or core.collected:
            started = started + self._mapping()
        # Flushed first: a transition out of RUNNING is logged with the
        # duration of the attempt that ended, before _start records when
        # the node's next attempt began.
        if core.transitions or core.job_transitions:
            self._outbox.flush(core, self._started_at, self._claimed_at)
        if core.abandon:
            self._abandon(core.abandon)
        if core.retry_waits:
            self._wait_for_retries(core.retry_waits)
        if core.cache_checks:
            self._check_caches(core.cache_checks)
        if started:
            self._start(started)
        if core.ended:
            self._resolve()
        elif self._offers is not None and core.ready:
            self._offer()

    def _wait_for_retries(self, waits: list[tuple[int, int, float]]) -> None:
        now = self._clock.monotonic()
        for node, attempt, delay in waits:
            due = RetryDue(node, attempt)
            self._timers.call_at(now + delay, lambda due=due: self.tell(due))  # type: ignore[misc]
        waits.clear()

    def _start(self, nodes: list[int]) -> None:
        core = self._core
        now = self._clock.monotonic()
        book = self._book
        ctx, commits = book.snapshot, book.commits
        offered = self._offered
        for node in nodes:
            taken_back = offered.pop(node, None)
            if taken_back is not None:
                actor, attempt = taken_back
            else:
                actor = self._actors.get(node) or self._new_actor(node)
                attempt = self._new_attempt(node, core.attempts[node])
            self._actors[node] = actor
            attempt.started_at = self._started_at[node] = now
            attempt.ctx_commits = commits
            self._attempts[node] = attempt
            if self._has_timeouts:
                self._arm(attempt)
            if self._beats[node]:
                heartbeat = self._tasks[node].heartbeat
                assert heartbeat is not None
                self._arm_heartbeat(attempt, now + heartbeat)
            if actor.accept(RunAttempt(attempt, ctx)):
                self.keep_or_dispatch(actor)
        self._count_actors()

    def _offer(self) -> None:
        core = self._core
        limit = OFFERS_PER_SLOT * core.max_concurrency
        # Topped up once half are taken: after every report it was a call chain
        # per task (about 1.5 µs per task of a 10k wide job).
        if len(core.offered) + len(core.claimed) > limit // 2:
            return
        nodes = core.offer(limit)
        if not nodes:
            return
        attempts = core.attempts
        published = []
        for node in nodes:
            actor = self._actors.pop(node, None) or self._new_actor(node)
            pair = (actor, self._new_attempt(node, attempts[node] + 1))
            self._offered[node] = pair
            published.append(pair)
        assert self._offers is not None
        self._offers.publish(published)
        self._count_actors()

    def _count_actors(self) -> None:
        self.peak_task_actors = max(self.peak_task_actors, len(self._actors) + len(self._offered))

    def _revoke(self, node: int) -> bool:
        return self._offers is None or self._offers.revoke(node)

    def _new_attempt(self, node: int, number: int) -> Attempt:
        # With a heartbeat, is_active() stamps the time it is called.
        clock = self._clock.monotonic if self._beats[node] else None
        attempt = Attempt(node, number, self._names[node], self._lock, clock)
        attempt.on_progress = self._outbox.progress_hook
        attempt.reads = True if self._tasks[node].cache else None
        if self._journal is not None:  # its inputs must be durable before it starts
            attempt.after = self._journal.inputs_batch(node)
        return attempt

    def _new_actor(self, node: int) -> TaskActor:
        policy = self._retries[node].policy
        retry_on = policy.retries if policy.retry_on is not None else None
        fn = self._fns[node]
        return TaskActor(node, self._names[node], fn, self._tiers[node], self, retry_on)
