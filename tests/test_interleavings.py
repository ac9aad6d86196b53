"""The JobActor's shell under every interleaving hypothesis can find.

The engine has no thread of its own per job: the JobActor is a mailbox drained
by whichever thread brings it work, pool threads take offers and run the
next node themselves, reports race cancel, deadlines and each other. Here
the shared pool is replaced by a queue this test runs items from in any
order, the tier by one that only records what it was asked to start, and
the clock by one whose timers fire when the test says. Each step is one
thing a thread could do next: run a queued pool item (a drain, a TaskActor),
finish a started attempt (returning, raising, returning a non-mapping, on
the pool thread that ran it or on another), fire a timer, cancel the job.
The invariants are those of the contract: never more than
``max_concurrency`` attempts really running, one wanted attempt per task,
RUNNING in READY order, only allowed transitions, a ctx of exactly the
completed outputs, and a job that always ends.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import hypothesis.strategies as st
from conftest import examples
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import daguerreo_actors as d
from daguerreo_actors import JobState, TaskEvent, TaskState, _pool
from daguerreo_actors._attempt import ACTIVE, Attempt
from daguerreo_actors._job_actor import JobActor
from daguerreo_actors._listeners import start_listeners
from daguerreo_actors._logging import TransitionLog
from daguerreo_actors._messages import CancelJob
from daguerreo_actors._options import job_options
from daguerreo_actors._states import TASK_TRANSITIONS
from daguerreo_actors._tiers import Reporter
from daguerreo_actors._validation import build_graph

WAIT = 10.0


class ManualPool:
    """Stands in for the shared pool: items wait until the test runs them."""

    def __init__(self) -> None:
        self.queue: list[Any] = []
        self._lock = threading.Lock()  # read by the leak check
        self._threads = 0
        self._idle = 0

    def execute(self, item: Any) -> None:
        self.queue.append(item)

    def retire_idle(self) -> int:
        return 0


class ManualTimer:
    def __init__(self, when: float, callback: Callable[[], None], group: ManualTimers) -> None:
        self.when = when
        self.callback = callback
        self.group = group
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.closed = False

    def call_at(self, when: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(when, callback, self)
        self.clock.pending.append(timer)
        return timer

    def close(self) -> None:
        self.closed = True


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.pending: list[ManualTimer] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now

    def timers(self, lost: Callable[[str], None]) -> ManualTimers:
        return ManualTimers(self)

    def due(self) -> list[ManualTimer]:
        return [t for t in self.pending if not t.cancelled and not t.group.closed]


class RecordingTier:
    """Starts nothing: records each attempt for the test to finish."""

    def __init__(self) -> None:
        self.started: list[tuple[Attempt, Reporter]] = []

    def start(self, attempt: Attempt, fn: Any, ctx: Mapping[Any, Any], report: Reporter) -> None:
        self.started.append((attempt, report))

    def close(self) -> None:
        pass


def never(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    raise AssertionError("the recording tier never calls a task function")


class ShellMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = ManualPool()
        self.saved_pool = _pool._pool
        _pool._pool = self.pool  # type: ignore[assignment]
        self.clock = ManualClock()
        self.tier = RecordingTier()
        self.finished: set[int] = set()  # ids of attempts the test finished
        self.events: list[d.Event] = []
        self.built = False
        self.cancelled = False

    @initialize(data=st.data())
    def build(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 10), label="tasks")
        tasks = []
        for i in range(n):
            # Few edges: wide DAGs keep a ready queue, hence offers to take.
            deps = data.draw(st.sets(st.integers(0, i - 1), max_size=1) if i else st.just(set()))
            timeout = data.draw(st.sampled_from([None, None, 5.0]))
            retries = data.draw(st.integers(0, 2))
            tasks.append(
                d.Task(
                    f"t{i}", never, [f"t{j}" for j in deps], timeout=timeout, max_retries=retries
                )
            )
        self.concurrency = data.draw(st.integers(1, 3), label="max_concurrency")
        job_timeout = data.draw(st.sampled_from([None, 30.0]), label="job timeout")
        task_tuple, graph = build_graph(tasks)
        self.graph = graph
        job_id = f"interleavings-{id(self)}"
        links = start_listeners([self.events.append], job_id, lambda _reason: None)
        options = job_options(
            task_tuple,
            clock=self.clock,
            started=self.clock.now,
            timeout=job_timeout,
            max_retries=None,
            retry=None,
            seed=0,
            max_concurrency=self.concurrency,
            executor=None,
            log_values=False,
            on_conflict="warn",
            on_failure="stop",
            resources=None,
        )
        self.actor = JobActor(
            job_id,
            task_tuple,
            graph,
            ctx={"seed": 0},
            options=options,
            log=TransitionLog(job_id),
            links=links,
        )
        self.actor._tiers = (self.tier,) * n
        self.job = self.actor.job
        self.built = True
        self.actor.start()

    # -- what a thread could do next -----------------------------------------

    def _run_chain(self, item: Any) -> None:
        while item is not None:
            item = item.run()

    @precondition(lambda self: self.built and self.pool.queue)
    @rule(pick=st.integers(0, 100))
    def run_a_pool_item(self, pick: int) -> None:
        item = self.pool.queue.pop(pick % len(self.pool.queue))
        self._run_chain(item)

    def _unfinished(self) -> list[tuple[Attempt, Reporter]]:
        return [(a, r) for a, r in self.tier.started if id(a) not in self.finished]

    @precondition(lambda self: self.built and self._unfinished())
    @rule(
        pick=st.integers(0, 100),
        how=st.sampled_from(["return", "return", "raise", "invalid"]),
        here=st.booleans(),
    )
    def finish_an_attempt(self, pick: int, how: str, here: bool) -> None:
        unfinished = self._unfinished()
        attempt, report = unfinished[pick % len(unfinished)]
        self.finished.add(id(attempt))
        if how == "return":
            following = report.returned(attempt, {attempt.task: attempt.number}, here=here)
        elif how == "raise":
            following = report.raised(attempt, ValueError(attempt.task), here=here)
        else:
            following = report.returned(attempt, ["not", "a", "mapping"], here=here)
        if not here:
            assert following is None  # only a pool thread that ran the code gets work
        self._run_chain(following)

    @precondition(lambda self: self.built and self.clock.due())
    @rule(pick=st.integers(0, 100))
    def fire_a_timer(self, pick: int) -> None:
        due = self.clock.due()
        timer = due[pick % len(due)]
        self.clock.pending.remove(timer)
        self.clock.now = max(self.clock.now, timer.when)
        timer.callback()

    @precondition(lambda self: self.built and not self.cancelled and self.pool.queue)
    @rule(chance=st.integers(0, 7))
    def cancel(self, chance: int) -> None:
        # Job.cancel(), without its wait: this test is the only thread.
        if chance:
            return  # rarely: a cancel ends the interesting part
        self.cancelled = True
        if self.job._claim_end(JobState.CANCELLED) is JobState.CANCELLED:
            self.actor.tell_here(CancelJob())

    @precondition(
        lambda self: self.built and not (self.pool.queue or self._unfinished() or self.clock.due())
    )
    @rule()
    def nothing_happens(self) -> None:
        # Keeps a step possible once the job has ended and all is quiet.
        pass

    # -- invariants ------------------------------------------------------------

    @invariant()
    def at_most_max_concurrency_attempts_really_run_and_one_wanted_per_task(self) -> None:
        if not self.built:
            return
        live = [a for a, _ in self._unfinished() if a.fate == ACTIVE]
        assert len(live) <= self.concurrency
        nodes = [a.node for a in live]
        assert len(nodes) == len(set(nodes))
        core = self.actor._core
        assert core.running <= self.concurrency

    @invariant()
    def the_job_resolves_only_once_its_books_ended(self) -> None:
        if self.built and self.job.done():
            assert self.actor._core.ended

    def teardown(self) -> None:
        try:
            if self.built:
                self._drive_to_the_end()
                self._check_the_end()
        finally:
            _pool._pool = self.saved_pool

    def _drive_to_the_end(self) -> None:
        for _ in range(10_000):
            if self.job.done() and not self.pool.queue:
                return
            if self.pool.queue:
                self._run_chain(self.pool.queue.pop(0))
            elif self._unfinished():
                attempt, report = self._unfinished()[0]
                self.finished.add(id(attempt))
                self._run_chain(report.returned(attempt, {attempt.task: attempt.number}, here=True))
            elif self.clock.due():
                self.fire_a_timer(0)
            else:
                raise AssertionError("nothing can move, and the job has not ended")
        raise AssertionError("the job never ended")

    def _check_the_end(self) -> None:
        result = self.job.get(timeout=WAIT)
        assert self.job.wait_for_listeners(WAIT)
        assert result.state.is_terminal
        assert all(state.is_terminal for state in result.task_states.values())
        task_events = [e for e in self.events if isinstance(e, TaskEvent)]
        last: dict[str, TaskState] = {}
        ready: deque[str] = deque()
        completing: dict[str, int] = {}
        for position, event in enumerate(task_events):
            old = last.get(event.task, TaskState.UNSCHEDULED)
            assert event.old_state is old
            assert (event.old_state, event.new_state) in TASK_TRANSITIONS
            last[event.task] = event.new_state
            if event.new_state is TaskState.READY:
                ready.append(event.task)
            elif event.old_state is TaskState.READY:
                # RUNNING takes the head of the queue, except a start made
                # only to be cancelled at the end (a taken offer).
                follows = task_events[position + 1 : position + 2]
                cancelled_at_once = (
                    event.new_state is TaskState.RUNNING
                    and follows
                    and follows[0].task == event.task
                    and follows[0].new_state is TaskState.CANCELLED
                )
                if event.new_state is TaskState.RUNNING and not cancelled_at_once:
                    assert ready[0] == event.task, (ready, event.task)
                ready.remove(event.task)
            if event.new_state is TaskState.COMPLETED:
                completing[event.task] = event.attempt
        assert last == dict(result.task_states)
        # Exactly the completed outputs, each from its completing attempt.
        assert result.ctx == {"seed": 0, **completing}
        if result.state is JobState.COMPLETED:
            assert set(completing) == set(self.graph.names)


ShellMachine.TestCase.settings = settings(max_examples=examples(400), stateful_step_count=50)
TestShellInterleavings = ShellMachine.TestCase
