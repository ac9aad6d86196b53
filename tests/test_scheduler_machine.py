"""The scheduler core (``_scheduler.Scheduler``) as hypothesis state machines.

A random DAG driven with random outcomes, no threads and no actors; the
invariants are checked after every step. ``OffersMachine`` also plays
the shell's side of offers.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from conftest import examples
from helpers import (
    CANCELLED,
    COMPLETED,
    EXCEPTION,
    FAILED,
    INVALID_RESULT,
    READY,
    RUNNING,
    SKIPPED,
    TIMED_OUT,
    UNSCHEDULED,
    UPSTREAM_FAILED,
    failed_node,
    failure_reason,
    fields,
    invalid_value,
    job_exception,
    never_called,
)
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from daguerreo_actors._errors import InternalError
from daguerreo_actors._scheduler import Scheduler, Transition, retry_allowed
from daguerreo_actors._states import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobState,
    TaskState,
)
from daguerreo_actors._task import Task
from daguerreo_actors._validation import build_graph

# -- the state machine ---------------------------------------------------------

NON_TERMINAL = frozenset(state for state in TaskState if not state.is_terminal)

#: A report in flight: (node, attempt, result, the offer its thread took).
Report = tuple[int, int, dict[str, int], int]


class SchedulerMachine(RuleBasedStateMachine):
    """A random DAG under random outcomes; the invariants hold after every step.

    With ``offers`` (see :class:`OffersMachine`) it also plays the shell's
    side of offers: ``shell`` stands for the shared ``Offers`` queue,
    ``revoke`` has the real semantics, and a "worker" whose attempt finishes
    may take the leftmost offer, its report (naming it) then staying in
    flight in ``pending`` while other messages overtake it.
    """

    sched: Scheduler
    max_retries: list[int]
    continue_on_failure: list[bool]
    model_states: list[TaskState]
    model_attempts: list[int]
    model_job: JobState
    model_ctx: dict[str, Any]
    counter: int
    shell: deque[int]
    #: READY nodes not started yet in real time (by the core or by a thread),
    #: in the order they became READY: real starts must pop its head.
    model_queue: deque[int]
    #: Nodes a thread took whose start the core has not recorded yet.
    taken: set[int]
    pending: list[Report]
    #: The depth the JobActor keeps offered after each message (0: none).
    depth: int
    built: bool = False
    #: Tuning for subclasses: whether the JobActor offers, the smallest DAG
    #: and offer depth, and how rarely attempts fail (one in ``failure_odds``).
    offers = False
    min_nodes = 0
    min_depth = 0
    failure_odds = 1

    @initialize(data=st.data())
    def build(self, data: st.DataObject) -> None:
        self._build(data)

    def _build(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(self.min_nodes, 15), label="nodes")
        deps = [
            sorted(data.draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
            for i in range(n)
        ]
        has_dependents = {d for ds in deps for d in ds}
        self.max_retries = [data.draw(st.integers(0, 2)) for _ in range(n)]
        self.continue_on_failure = [
            i not in has_dependents and data.draw(st.booleans()) for i in range(n)
        ]
        _, graph = build_graph(
            [Task(f"t{i}", never_called, frozenset(f"t{d}" for d in deps[i])) for i in range(n)]
        )
        assert [list(ds) for ds in graph.dependencies] == deps
        self.sched = Scheduler(
            graph,
            max_concurrency=data.draw(st.integers(1, 3), label="max_concurrency"),
            max_retries=self.max_retries,
            continue_on_failure=self.continue_on_failure,
            ctx={"seed": -1},
            record=True,
            revoke=self.revoke,
        )
        self.model_states = [UNSCHEDULED] * n
        self.model_attempts = [0] * n
        self.model_job = JobState.IDLE
        self.model_ctx = {"seed": -1}
        self.counter = 0
        self.shell = deque()
        self.model_queue = deque()
        self.taken = set()
        self.pending = []
        self.depth = data.draw(st.integers(self.min_depth, 6), label="depth") if self.offers else 0
        self.built = True
        self._absorb(self.sched.start(), ended_before=False)

    # -- the fake shell --

    def revoke(self, node: int) -> bool:
        """``Offers.revoke``: withdraw ``node`` if it is still the leftmost offer."""
        shell = self.shell
        if node in shell:
            # The core takes offers back in queue order: an earlier one still
            # published would be overtaken.
            assert shell[0] == node, f"t{node} revoked before t{shell[0]}"
            shell.popleft()
            return True
        assert node in self.taken, f"t{node} revoked but never offered"
        return False

    # -- helpers --

    def _absorb(
        self,
        started: list[int] | None,
        *,
        ended_before: bool,
        report: tuple[int, int] | None = None,
    ) -> None:
        """Check what the last call recorded against the model, and update it.

        ``report`` is (reporting node, claimed node) for a report naming a
        claim. Then, like the JobActor after a message that was not stale,
        top the offers up.
        """
        sched = self.sched
        transitions: list[Transition] = sched.take_transitions()
        job_transitions = sched.take_job_transitions()
        if started is None:
            assert transitions == []
            assert job_transitions == []
            return
        if ended_before:
            assert started == []
        claim = None if report is None else report[1]
        core_starts: list[int] = []
        claim_position: int | None = None
        # The transitions, replayed (as listeners replay their events), never
        # show more tasks RUNNING than the limit.
        live = self.model_states.count(RUNNING)
        for position, (n, old, new, attempt) in enumerate(map(fields, transitions)):
            assert (old, new) in TASK_TRANSITIONS, (n, old, new)
            assert old is self.model_states[n], (n, old, self.model_states[n])
            live += (new is RUNNING) - (old is RUNNING)
            assert live <= sched.max_concurrency, f"{live} running after t{n}: {old} -> {new}"
            if new is RUNNING:
                assert not ended_before, "a task started after the end"
                self.model_attempts[n] += 1
                if n == claim:
                    assert claim_position is None, f"claimed t{n} started twice"
                    assert not core_starts, "the core dispatched before starting the claim"
                    claim_position = position
                    self.taken.discard(n)
                elif n in self.taken:
                    # Taken by a thread whose report the end made stale: it
                    # did start, and is cancelled at once.
                    assert sched.ended, f"taken t{n} started without its report"
                    assert fields(transitions[position + 1])[:3] == (n, RUNNING, CANCELLED)
                    self.taken.discard(n)
                else:
                    # Real starts happen in ready-queue order.
                    assert self.model_queue, f"t{n} started but was not waiting"
                    head = self.model_queue.popleft()
                    assert head == n, f"t{n} started before t{head}"
                    core_starts.append(n)
            elif new is READY:
                self.model_queue.append(n)
            elif old is READY:
                assert new is SKIPPED
                assert n in self.model_queue, f"t{n} skipped, but a thread took it: it started"
                self.model_queue.remove(n)
            assert attempt == self.model_attempts[n], (n, old, new, attempt)
            self.model_states[n] = new
        assert started == core_starts
        if report is not None:
            # The report's node completes first, freeing the slot the claim
            # then takes.
            assert claim_position is not None, f"claimed t{claim} did not start"
            assert fields(transitions[0])[:3] == (report[0], RUNNING, COMPLETED)
            assert claim_position >= 1
        for position, job_old, job_new in job_transitions:
            assert 0 <= position <= len(transitions)
            assert (job_old, job_new) in JOB_TRANSITIONS
            assert job_old is self.model_job
            self.model_job = job_new
        assert self.model_job is sched.job_state
        assert self.model_states == sched.states
        assert self.model_attempts == sched.attempts
        if sched.ended:
            assert not self.taken
            assert not self.model_queue
        self._after_message()

    def _offer(self, limit: int) -> None:
        sched = self.sched
        ready = list(sched.ready)
        already = len(sched.offered)
        new = sched.offer(limit)
        assert new == ready[already : limit - len(sched.claimed)]
        assert sched.take_transitions() == []
        self.shell.extend(new)
        if sched.ended:
            assert new == []

    def _after_message(self) -> None:
        """What the JobActor does after each message: keep ``depth`` offers."""
        if not self.sched.ended:
            self._offer(self.depth)

    def _in_flight(self) -> set[int]:
        return {report[0] for report in self.pending}

    def _running(self) -> list[int]:
        """RUNNING nodes whose attempt has not finished (no report in flight)."""
        in_flight = self._in_flight()
        return [
            n
            for n, state in enumerate(self.sched.states)
            if state is RUNNING and n not in in_flight
        ]

    def _pick_running(self, pick: int) -> int:
        running = self._running()
        return running[pick % len(running)]

    def _can_act(self) -> bool:
        return self.built and not self.sched.ended and bool(self._running())

    def _check_failure(self, n: int, reason: TaskState, exc: BaseException | None) -> None:
        sched = self.sched
        if sched.states[n] is FAILED and not self.continue_on_failure[n]:
            assert sched.job_state is JobState.FAILED
            assert failed_node(sched) == n
            assert failure_reason(sched) is reason
            assert job_exception(sched) is exc

    def _snapshot(self) -> tuple[object, ...]:
        sched = self.sched
        return (
            list(sched.states),
            list(sched.attempts),
            sched.final_ctx(),
            list(sched.ready),
            set(sched.offered),
            set(sched.claimed),
            list(self.shell),
            sched.running,
            sched.job_state,
        )

    # -- rules --

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000))
    def complete_one(self, pick: int) -> None:
        n = self._pick_running(pick)
        key = f"k{self.counter}"
        self.counter += 1
        started = self.sched.completed(n, self.sched.attempts[n], {key: n})
        self.model_ctx[key] = n
        self._absorb(started, ended_before=False)
        assert self.sched.states[n] is COMPLETED

    @precondition(lambda self: self.built and self.offers)
    @rule(limit=st.integers(0, 6))
    def offer(self, limit: int) -> None:
        self._offer(limit)

    @precondition(lambda self: self._can_act() and bool(self.shell))
    @rule(pick=st.integers(0, 1000))
    def finish_and_take_an_offer(self, pick: int) -> None:
        """A thread's attempt finishes; it takes the leftmost offer and starts it."""
        n = self._pick_running(pick)
        taken = self.shell.popleft()
        assert self.sched.states[taken] is READY
        assert self.model_queue.popleft() == taken, "an offer overtook an older READY task"
        self.taken.add(taken)
        key = f"k{self.counter}"
        self.counter += 1
        self.pending.append((n, self.sched.attempts[n], {key: n}, taken))

    @precondition(lambda self: self.built and bool(self.pending))
    @rule(pick=st.integers(0, 1000))
    def deliver_a_report(self, pick: int) -> None:
        """A report in flight arrives (reports from threads overtake each other)."""
        sched = self.sched
        n, attempt, result, taken = self.pending.pop(pick % len(self.pending))
        if sched.ended:
            before = self._snapshot()
            assert sched.completed(n, attempt, result, taken) is None
            self._absorb(None, ended_before=True)
            assert self._snapshot() == before
            return
        # Nothing can make an attempt that finished stale but the job's end.
        assert sched.is_running(n, attempt)
        assert taken in self.taken
        started = sched.completed(n, attempt, result, taken)
        self.model_ctx.update(result)
        self._absorb(started, ended_before=False, report=(n, taken))
        assert sched.states[n] is COMPLETED
        assert sched.states[taken] is RUNNING
        assert sched.attempts[taken] == self.model_attempts[taken]

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000), chance=st.integers(0, 11))
    def fail_one(self, pick: int, chance: int) -> None:
        if chance % self.failure_odds:
            return
        n = self._pick_running(pick)
        attempt = self.sched.attempts[n]
        retry = retry_allowed(attempt, self.max_retries[n])
        exc = ValueError(f"t{n} attempt {attempt}")
        self._absorb(self.sched.failed(n, attempt, exc, retry), ended_before=False)
        assert self.sched.states[n] in ((READY, RUNNING) if retry else (FAILED,))
        self._check_failure(n, EXCEPTION, exc)

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000), chance=st.integers(0, 11))
    def time_one_out(self, pick: int, chance: int) -> None:
        if chance % self.failure_odds:
            return
        n = self._pick_running(pick)
        attempt = self.sched.attempts[n]
        retry = retry_allowed(attempt, self.max_retries[n])
        self._absorb(self.sched.timed_out(n, attempt, retry), ended_before=False)
        assert self.sched.states[n] in ((READY, RUNNING) if retry else (FAILED,))
        self._check_failure(n, TIMED_OUT, None)

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000), chance=st.integers(0, 9))
    def return_an_invalid_result(self, pick: int, chance: int) -> None:
        if chance:  # rarely: it ends the job
            return
        n = self._pick_running(pick)
        value = ("not", "a", "mapping", n)
        started = self.sched.invalid_result(n, self.sched.attempts[n], value)
        self._absorb(started, ended_before=False)
        assert started == []
        assert self.sched.job_state is JobState.FAILED
        assert failed_node(self.sched) == n
        assert failure_reason(self.sched) is INVALID_RESULT
        assert invalid_value(self.sched) == value

    @precondition(lambda self: self.built)
    @rule(
        state=st.sampled_from([JobState.CANCELLED, JobState.TIMED_OUT]),
        chance=st.integers(0, 7),
    )
    def end_the_job(self, state: JobState, chance: int) -> None:
        if chance:  # rarely: it ends the job
            return
        ended_before = self.sched.ended
        previous = self.sched.job_state
        assert self.sched.end(state) is not ended_before
        self._absorb([], ended_before=ended_before)
        assert self.sched.job_state is (previous if ended_before else state)

    def _stale_attempt(self, n: int, offset: int) -> int:
        sched = self.sched
        attempt = sched.attempts[n] + offset
        if sched.states[n] is RUNNING and not sched.ended and offset == 0:
            attempt += 1  # the current attempt is not stale: make it a later one
        return attempt

    @precondition(lambda self: self.built and len(self.sched.graph) > 0)
    @rule(
        pick=st.integers(0, 1000),
        offset=st.sampled_from([-1, 0, 1]),
        call=st.sampled_from(["completed", "failed", "timed_out", "invalid_result"]),
        chance=st.integers(0, 3),
    )
    def send_a_stale_message(self, pick: int, offset: int, call: str, chance: int) -> None:
        if chance:  # now and then: the other rules make progress
            return
        sched = self.sched
        n = pick % len(sched.graph)
        attempt = self._stale_attempt(n, offset)
        before = self._snapshot()
        if call == "completed":
            result = sched.completed(n, attempt, {"stale": n})
        elif call == "failed":
            result = sched.failed(n, attempt, ValueError("stale"), True)
        elif call == "timed_out":
            result = sched.timed_out(n, attempt, True)
        else:
            result = sched.invalid_result(n, attempt, "stale")
        assert result is None
        self._absorb(None, ended_before=sched.ended)
        assert self._snapshot() == before

    @precondition(lambda self: self.built and len(self.sched.graph) > 0)
    @rule(
        pick=st.integers(0, 1000),
        offset=st.sampled_from([-1, 0, 1]),
        claim=st.integers(0, 1000),
        chance=st.integers(0, 3),
    )
    def send_a_stale_report_with_a_claim(
        self, pick: int, offset: int, claim: int, chance: int
    ) -> None:
        if chance:  # now and then: the other rules make progress
            return
        sched = self.sched
        n = pick % len(sched.graph)
        attempt = self._stale_attempt(n, offset)
        claimed = claim % len(sched.graph)
        before = self._snapshot()
        if claimed in sched.claimed and not sched.ended:
            return  # a real claim: it starts (test_scheduler_offers.py covers that case)
        if sched.ended or claimed in sched.settled_claims:
            assert sched.completed(n, attempt, {"stale": n}, claimed) is None
        else:
            with pytest.raises(InternalError):
                sched.completed(n, attempt, {"stale": n}, claimed)
        self._absorb(None, ended_before=sched.ended)
        assert self._snapshot() == before

    # -- invariants --

    @invariant()
    def transitions_were_all_checked(self) -> None:
        if not self.built:
            return
        assert self.sched.take_transitions() == []
        assert self.model_states == self.sched.states

    @invariant()
    def concurrency_is_bounded_and_no_slot_idles_while_work_waits(self) -> None:
        if not self.built:
            return
        sched = self.sched
        states = sched.states
        running = sum(state is RUNNING for state in states)
        assert sched.running == running <= sched.max_concurrency
        # In real time too: a taken offer runs in the slot of the attempt
        # whose report names it, still RUNNING in the books.
        assert len(self.taken) <= len(self.pending) or sched.ended
        assert sorted([*sched.ready, *sched.claimed]) == [
            n for n, s in enumerate(states) if s is READY
        ]
        assert len(set(sched.ready)) == len(sched.ready)
        if not sched.ended:
            # A free slot waits only for the report of a taken offer (it is
            # ahead in the queue; its report refills the slot).
            if running < sched.max_concurrency and not sched.claimed:
                assert not sched.ready
            # Something must be running, or nothing could ever move again.
            assert running >= 1

    @invariant()
    def offers_are_a_prefix_of_the_ready_queue_and_match_the_shell(self) -> None:
        if not self.built:
            return
        sched = self.sched
        ready = list(sched.ready)
        assert set(ready[: len(sched.offered)]) == sched.offered
        assert set(self.shell) <= sched.offered
        # The published offers are the head of what waits in real time.
        assert list(self.shell) == list(self.model_queue)[: len(self.shell)]
        assert [n for n in ready if n not in self.taken] == list(self.model_queue)
        # What threads took is what the core knows as claimed, or still
        # thinks offered.
        assert not set(sched.claimed) & sched.offered
        assert self.taken == set(sched.claimed) | (sched.offered - set(self.shell))
        for n in sched.claimed:
            assert sched.states[n] is READY
            assert n not in ready

    @invariant()
    def attempts_are_bounded(self) -> None:
        if not self.built:
            return
        for n, attempts in enumerate(self.sched.attempts):
            assert attempts <= self.max_retries[n] + 1

    @invariant()
    def tasks_run_only_after_their_dependencies_completed(self) -> None:
        if not self.built:
            return
        sched = self.sched
        states = sched.states
        for n, state in enumerate(states):
            deps_done = all(states[d] is COMPLETED for d in sched.graph.dependencies[n])
            if state is UPSTREAM_FAILED:
                # Never ran: a dependency failed (or could not run, itself).
                assert any(
                    states[d] in (FAILED, INVALID_RESULT, UPSTREAM_FAILED)
                    for d in sched.graph.dependencies[n]
                ), (n, [states[d] for d in sched.graph.dependencies[n]])
            elif state not in (UNSCHEDULED, SKIPPED):
                assert deps_done, (n, state)
            if state is UNSCHEDULED and not sched.ended:
                assert not deps_done, f"t{n} is stuck unscheduled"
            if state in (EXCEPTION, TIMED_OUT):
                raise AssertionError(f"t{n} left in the transient state {state}")

    @invariant()
    def an_ended_job_has_only_terminal_tasks(self) -> None:
        if not self.built:
            return
        sched = self.sched
        assert sched.ended is sched.job_state.is_terminal
        if sched.ended:
            assert all(state.is_terminal for state in sched.states), sched.states
            assert sched.running == 0
            assert not sched.ready
            assert not sched.offered
            assert not sched.claimed
            assert not self.shell
        else:
            assert sched.job_state is JobState.RUNNING
            assert any(state in NON_TERMINAL for state in sched.states)
        if sched.job_state is JobState.COMPLETED:
            for n, state in enumerate(sched.states):
                assert state is COMPLETED or (state is FAILED and self.continue_on_failure[n])

    @invariant()
    def ctx_holds_exactly_the_completed_outputs(self) -> None:
        if not self.built:
            return
        assert self.sched.final_ctx() == self.model_ctx
        assert list(self.sched.final_ctx()) == list(self.model_ctx)


SchedulerMachine.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=50, deadline=None, report_multiple_bugs=False
)
# Passing takes seconds; shrinking a failure can take minutes, which the
# project-wide 60 s timeout would cut short, leaving an unshrunk "flaky" report.
TestSchedulerStateMachine = pytest.mark.timeout(400)(SchedulerMachine.TestCase)


class OffersMachine(SchedulerMachine):
    """The same machine with offers, tuned for them: bigger DAGs, rarer failures.

    Most steps then keep the job running with work waiting, so threads take
    offers, the core finds some taken, and jobs end with claims outstanding.
    """

    offers = True
    min_nodes = 4
    min_depth = 1
    failure_odds = 4

    @precondition(lambda self: self.built and self.sched.ended)
    @rule(data=st.data())
    def start_another_job(self, data: st.DataObject) -> None:
        """Rather than idle after the end: the reports in flight arrive, stale."""
        while self.pending:
            self.deliver_a_report(0)
        self._build(data)


# No shrinking: hypothesis takes minutes to shrink this machine's failures
# (and gives up after five), so a failure is reported as found, a few seconds
# in; the failing assertion names the task and the transition. Add
# Phase.shrink here to shrink one.
OffersMachine.TestCase.settings = settings(
    max_examples=examples(150),
    stateful_step_count=80,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
TestOffersStateMachine = OffersMachine.TestCase
