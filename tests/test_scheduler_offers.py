"""The scheduler core (``_scheduler.Scheduler``): offers to pool threads, and claims.

No threads, no actors: every test builds a graph, feeds the core the calls
the JobActor would make, and checks the transitions it records and the
state it keeps. The helpers that drive it are in ``helpers.py``.

``Shell`` plays the shell's side of offers (the JobActor's ``Offers``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from helpers import (
    READY,
    RUNNING,
    complete,
    fail,
    fields,
    graph_of,
    independent,
    names,
    node,
    scheduler,
    state_of,
    steps,
    steps_with_attempts,
    time_out,
)

from daguerreo_actors._errors import InternalError
from daguerreo_actors._graph import Graph
from daguerreo_actors._scheduler import Scheduler, Transition
from daguerreo_actors._states import JobState

# -- offers --------------------------------------------------------------------


class Shell:
    """The shell's side of offers, without threads: the JobActor's ``Offers``.

    Workers ``take`` offers from the left; ``revoke`` takes one back only if
    it is still the leftmost (offers leave only from the left, so one that is
    not first was taken). Every revoke is logged.
    """

    def __init__(self) -> None:
        self.queue: deque[int] = deque()
        self.revoked: list[tuple[int, bool]] = []

    def publish(self, nodes: Sequence[int]) -> None:
        self.queue.extend(nodes)

    def take(self) -> int:
        return self.queue.popleft()

    def revoke(self, node: int) -> bool:
        withdrawn = bool(self.queue) and self.queue[0] == node
        if withdrawn:
            self.queue.popleft()
        self.revoked.append((node, withdrawn))
        return withdrawn


def with_shell(graph: Graph, **kwargs: Any) -> tuple[Scheduler, Shell]:
    shell = Shell()
    return scheduler(graph, revoke=shell.revoke, **kwargs), shell


def offer(sched: Scheduler, shell: Shell, limit: int) -> list[str]:
    """What the JobActor does after each message: top the offers up, publish them."""
    new = sched.offer(limit)
    shell.publish(new)
    return [sched.graph.names[n] for n in new]


def report(
    sched: Scheduler, name: str, claimed: str | None, result: Mapping[Any, Any] | None = None
) -> list[str] | None:
    """The current attempt of ``name`` succeeded and its thread took ``claimed``."""
    n = node(sched, name)
    started = sched.completed(
        n,
        sched.attempts[n],
        {} if result is None else result,
        None if claimed is None else node(sched, claimed),
    )
    return names(sched, started)


def offered_names(sched: Scheduler) -> list[str]:
    """The offered nodes, in ready-queue order; checks that they are its prefix."""
    ready = list(sched.ready)
    prefix = ready[: len(sched.offered)]
    assert set(prefix) == sched.offered, (ready, sched.offered)
    return [sched.graph.names[n] for n in prefix]


def claimed_names(sched: Scheduler) -> list[str]:
    return sorted(sched.graph.names[n] for n in sched.claimed)


def check_books(sched: Scheduler) -> None:
    running = sum(state is RUNNING for state in sched.states)
    assert sched.running == running <= sched.max_concurrency
    for n in sched.claimed:
        assert sched.states[n] is READY
        assert n not in sched.ready
        assert n not in sched.offered


def most_running(transitions: Sequence[Transition], running: int) -> int:
    """The most tasks RUNNING at once, replaying ``transitions`` from ``running``.

    What a listener counting the job's TaskEvents sees (``test_invariants.py``
    asserts it never exceeds ``max_concurrency``).
    """
    most = running
    for _n, old, new, _attempt in map(fields, transitions):
        running += (new is RUNNING) - (old is RUNNING)
        most = max(most, running)
    return most


def test_offer_publishes_the_front_of_the_ready_queue_up_to_the_limit_and_never_re_offers() -> None:
    sched, shell = with_shell(independent("a", "b", "c", "d", "e", "f"), max_concurrency=1)
    assert offer(sched, shell, 3) == []  # before the start nothing is ready
    assert names(sched, sched.start()) == ["a"]
    steps(sched)
    assert offer(sched, shell, 0) == []
    assert offer(sched, shell, 2) == ["b", "c"]
    assert offer(sched, shell, 2) == []
    assert offer(sched, shell, 1) == []  # a lower limit takes nothing back
    assert offer(sched, shell, 4) == ["d", "e"]
    assert offered_names(sched) == ["b", "c", "d", "e"]
    assert offer(sched, shell, 10) == ["f"]
    assert offer(sched, shell, 10) == []
    assert names(sched, list(shell.queue)) == ["b", "c", "d", "e", "f"]
    # Offering changes no state and records nothing.
    assert steps(sched) == []
    assert state_of(sched) == {"a": "running"} | dict.fromkeys("bcdef", "ready")
    assert names(sched, list(sched.ready)) == ["b", "c", "d", "e", "f"]
    assert shell.revoked == []


def test_offer_tops_up_from_the_new_front_after_the_core_started_an_offered_node() -> None:
    sched, shell = with_shell(independent("a", "b", "c", "d"), max_concurrency=1)
    sched.start()
    assert offer(sched, shell, 2) == ["b", "c"]
    assert complete(sched, "a") == ["b"]  # no claim: the core takes b back and starts it
    assert shell.revoked == [(node(sched, "b"), True)]
    assert offered_names(sched) == ["c"]
    assert offer(sched, shell, 2) == ["d"]
    assert offered_names(sched) == ["c", "d"]
    assert names(sched, list(shell.queue)) == ["c", "d"]


def test_a_retried_node_is_offered_again_from_the_back_of_the_queue() -> None:
    sched, shell = with_shell(independent("a", "b"), max_concurrency=1, max_retries=1)
    sched.start()
    assert offer(sched, shell, 5) == ["b"]
    assert fail(sched, "a", retry=True) == ["b"]  # b taken back and started
    assert offer(sched, shell, 5) == ["a"]
    assert report(sched, "b", claimed="a") == []
    assert sched.attempts == [2, 1]
    assert state_of(sched) == {"a": "running", "b": "completed"}


def test_a_claim_reported_with_a_completion_starts_the_claimed_node_in_the_freed_slot() -> None:
    sched, shell = with_shell(
        graph_of([("a", []), ("b", []), ("c", []), ("d", ["a"])]), max_concurrency=1
    )
    assert names(sched, sched.start()) == ["a"]
    steps(sched)
    assert offer(sched, shell, 2) == ["b", "c"]
    assert names(sched, [shell.take()]) == ["b"]  # a's thread takes b and runs it
    # The report names b; b is not in the returned list: the thread runs it already.
    assert report(sched, "a", claimed="b", result={"a": 1}) == []
    recorded = steps_with_attempts(sched)
    # a's completion frees the slot b then takes; d, which a's completion
    # released, may become READY before or after b starts.
    assert recorded[0] == ("a", "running", "completed", 1)
    assert sorted(recorded[1:]) == [
        ("b", "ready", "running", 1),
        ("d", "unscheduled", "ready", 0),
    ]
    assert sched.running == 1
    assert sched.attempts[node(sched, "b")] == 1
    assert names(sched, list(sched.ready)) == ["c", "d"]
    assert offered_names(sched) == ["c"]
    assert claimed_names(sched) == []
    assert shell.revoked == []
    assert sched.final_ctx() == {"a": 1}
    check_books(sched)
    # The claimed attempt reports like any other, and may claim in its turn.
    assert names(sched, [shell.take()]) == ["c"]
    assert report(sched, "b", claimed="c") == []
    assert complete(sched, "c") == ["d"]
    assert complete(sched, "d") == []
    assert sched.job_state is JobState.COMPLETED
    assert sched.attempts == [1, 1, 1, 1]


def test_a_claim_starts_before_the_core_dispatches_the_other_free_slots() -> None:
    # Two slots; a's thread takes c while b completes: the core finds c taken,
    # so b's slot stays free until a's report starts c and dispatches d there.
    sched, shell = with_shell(
        graph_of([("a", []), ("b", []), ("c", []), ("d", ["a"])]), max_concurrency=2
    )
    assert names(sched, sched.start()) == ["a", "b"]
    assert offer(sched, shell, 4) == ["c"]
    assert names(sched, [shell.take()]) == ["c"]
    assert complete(sched, "b") == []
    assert claimed_names(sched) == ["c"]
    assert sched.running == 1
    steps(sched)
    assert report(sched, "a", claimed="c") == ["d"]
    recorded = steps_with_attempts(sched)
    assert recorded[0] == ("a", "running", "completed", 1)
    assert sorted(recorded[1:]) == [
        ("c", "ready", "running", 1),
        ("d", "ready", "running", 1),
        ("d", "unscheduled", "ready", 0),
    ]
    # c takes a's slot before the core fills the free one (b's) with d.
    assert recorded.index(("c", "ready", "running", 1)) < recorded.index(
        ("d", "ready", "running", 1)
    )
    assert sched.running == 2
    assert claimed_names(sched) == []
    check_books(sched)


def test_a_failed_revoke_claims_the_node_and_the_freed_slot_waits_for_its_report() -> None:
    sched, shell = with_shell(independent("a", "b", "c", "d", "e"), max_concurrency=2)
    assert names(sched, sched.start()) == ["a", "b"]
    assert offer(sched, shell, 2) == ["c", "d"]
    assert names(sched, [shell.take()]) == ["c"]  # a finished, took c: its report is on the way
    steps(sched)
    # b completes first: the core tries to take c back and fails. c is ahead
    # of d in the queue and its start is unread: nothing else starts yet.
    assert complete(sched, "b") == []
    assert shell.revoked == [(node(sched, "c"), False)]
    assert claimed_names(sched) == ["c"]
    assert state_of(sched)["c"] == "ready"
    assert names(sched, list(sched.ready)) == ["d", "e"]
    assert offered_names(sched) == ["d"]
    assert sched.running == 1  # a, its report in flight
    check_books(sched)
    assert steps_with_attempts(sched) == [("b", "running", "completed", 1)]
    # The claim counts against the offers' limit.
    assert offer(sched, shell, 2) == []
    # a's report starts c in a's slot, then the free slot goes to d: RUNNING
    # in queue order.
    assert report(sched, "a", claimed="c") == ["d"]
    assert steps_with_attempts(sched) == [
        ("a", "running", "completed", 1),
        ("c", "ready", "running", 1),
        ("d", "ready", "running", 1),
    ]
    assert claimed_names(sched) == []
    assert sched.running == 2
    check_books(sched)
    assert complete(sched, "c") == ["e"]
    complete(sched, "d")
    complete(sched, "e")
    assert sched.job_state is JobState.COMPLETED
    assert sched.attempts == [1] * 5


def test_offers_taken_by_two_threads_may_be_reported_in_either_order() -> None:
    sched, shell = with_shell(independent("a", "b", "c", "d", "e"), max_concurrency=2)
    sched.start()
    assert offer(sched, shell, 3) == ["c", "d", "e"]
    assert names(sched, [shell.take(), shell.take()]) == ["c", "d"]
    steps(sched)
    # b's thread took d after a's took c, but its report comes first.
    assert report(sched, "b", claimed="d") == []
    assert offered_names(sched) == ["c", "e"]
    assert report(sched, "a", claimed="c") == []
    assert offered_names(sched) == ["e"]
    assert steps(sched) == [
        ("b", "completed"),
        ("d", "running"),
        ("a", "completed"),
        ("c", "running"),
    ]
    assert shell.revoked == []
    check_books(sched)


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(lambda s: s.end(JobState.CANCELLED), id="cancel"),
        pytest.param(lambda s: s.end(JobState.TIMED_OUT), id="job-timeout"),
        pytest.param(lambda s: fail(s, "x"), id="task-failure"),
        pytest.param(lambda s: s.invalid_result(node(s, "x"), 1, 42), id="invalid-result"),
    ],
)
def test_ending_the_job_withdraws_every_offer_and_cancels_the_ones_a_thread_took(
    end: Callable[[Scheduler], object],
) -> None:
    sched, shell = with_shell(independent("x", "a", "b", "c", "d", "e"), max_concurrency=2)
    assert names(sched, sched.start()) == ["x", "a"]
    assert offer(sched, shell, 3) == ["b", "c", "d"]
    assert names(sched, [shell.take()]) == ["b"]  # a's thread took b, report in flight
    steps(sched)
    end(sched)
    transitions = steps_with_attempts(sched)
    assert ("b", "ready", "running", 1) in transitions
    assert transitions.index(("b", "ready", "running", 1)) + 1 == transitions.index(
        ("b", "running", "cancelled", 1)
    )
    assert sorted(t for t in transitions if t[0] != "x") == [
        ("a", "running", "cancelled", 1),
        ("b", "ready", "running", 1),
        ("b", "running", "cancelled", 1),
        ("c", "ready", "skipped", 0),
        ("d", "ready", "skipped", 0),
        ("e", "ready", "skipped", 0),
    ]
    # Every offer was taken back, in order; b's was gone.
    assert names(sched, [n for n, _ in shell.revoked]) == ["b", "c", "d"]
    assert [withdrawn for _, withdrawn in shell.revoked] == [False, True, True]
    assert not shell.queue
    assert sched.offered == set()
    assert not sched.claimed
    assert not sched.ready
    assert sched.running == 0
    assert sched.attempts == [1, 1, 1, 0, 0, 0]
    assert all(state.is_terminal for state in sched.states)
    # a's report, naming b, arrives after the end: stale, nothing changes.
    before = (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.job_state)
    assert sched.completed(node(sched, "a"), 1, {"late": 1}, node(sched, "b")) is None
    assert (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.job_state) == before
    assert sched.take_transitions() == []
    assert offer(sched, shell, 3) == []


def test_ending_the_job_starts_and_cancels_a_claimed_node_whose_start_was_not_reported() -> None:
    sched, shell = with_shell(independent("a", "b", "c", "d", "e"), max_concurrency=2)
    sched.start()
    assert offer(sched, shell, 2) == ["c", "d"]
    shell.take()  # a's thread takes c
    assert complete(sched, "b") == []  # c found taken: claimed, the slot waits
    assert claimed_names(sched) == ["c"]
    assert offer(sched, shell, 2) == []  # d and the claim fill the limit
    steps(sched)
    shell.revoked.clear()
    assert sched.end(JobState.CANCELLED) is True
    transitions = sched.take_transitions()
    assert most_running(transitions, running=2) <= 2
    recorded = [
        (sched.graph.names[n], old.value, new.value, attempt)
        for n, old, new, attempt in map(fields, transitions)
    ]
    assert sorted(recorded) == [
        ("a", "running", "cancelled", 1),
        ("c", "ready", "running", 1),
        ("c", "running", "cancelled", 1),
        ("d", "ready", "skipped", 0),
        ("e", "ready", "skipped", 0),
    ]
    started = recorded.index(("c", "ready", "running", 1))
    assert recorded[started + 1] == ("c", "running", "cancelled", 1)
    assert shell.revoked == [(node(sched, "d"), True)]
    assert not sched.claimed
    assert sched.offered == set()
    assert sched.running == 0
    assert sched.attempts == [1, 1, 1, 0, 0]
    assert sched.completed(node(sched, "a"), 1, {}, node(sched, "c")) is None
    assert sched.completed(node(sched, "c"), 1, {}) is None
    assert sched.take_transitions() == []


def taken_offer_in_a_full_job() -> Scheduler:
    """x (index 0) runs in w's slot, w's report naming it still in flight.

    w has a dependent, so it is queued and started before x, whose index is
    lower; max_concurrency=1.
    """
    sched, shell = with_shell(graph_of([("x", []), ("w", []), ("d", ["w"])]), max_concurrency=1)
    assert names(sched, sched.start()) == ["w"]
    assert offer(sched, shell, 1) == ["x"]
    assert names(sched, [shell.take()]) == ["x"]
    return sched


def claimed_node_in_a_full_job() -> Scheduler:
    """x (index 0) is claimed: the core found it taken when it tried to start it.

    w and v, which have dependents, run first (max_concurrency=2); w's thread
    takes x, then v completes and the core finds x taken: v's slot waits for
    w's report (dv, behind x in the queue, does not start).
    """
    sched, shell = with_shell(
        graph_of([("x", []), ("w", []), ("v", []), ("dw", ["w"]), ("dv", ["v"])]),
        max_concurrency=2,
    )
    assert names(sched, sched.start()) == ["w", "v"]
    assert offer(sched, shell, 1) == ["x"]
    assert names(sched, [shell.take()]) == ["x"]
    assert complete(sched, "v") == []
    assert claimed_names(sched) == ["x"]
    return sched


@pytest.mark.parametrize("state", [JobState.CANCELLED, JobState.TIMED_OUT, JobState.FAILED])
@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(taken_offer_in_a_full_job, id="offer-taken"),
        pytest.param(claimed_node_in_a_full_job, id="claimed"),
    ],
)
def test_ending_the_job_records_a_taken_node_starting_only_once_a_slot_is_free(
    setup: Callable[[], Scheduler], state: JobState
) -> None:
    # Every slot is busy in the books, one of them (w's) really running x.
    # Ending the job records x READY -> RUNNING -> CANCELLED: that start must
    # come after the cancellation of the running tasks (w's at least), or the
    # transitions, and the TaskEvents made from them, show more tasks
    # running at once than max_concurrency.
    sched = setup()
    # Full: in the books, or waiting for the claimed node's report.
    assert sched.running + len(sched.claimed) == sched.max_concurrency
    sched.take_transitions()
    assert sched.end(state) is True
    transitions = sched.take_transitions()
    recorded = [
        (sched.graph.names[n], old.value, new.value, attempt)
        for n, old, new, attempt in map(fields, transitions)
    ]
    assert ("x", "ready", "running", 1) in recorded
    assert ("x", "running", "cancelled", 1) in recorded
    assert all(task.is_terminal for task in sched.states)
    assert most_running(transitions, sched.max_concurrency) <= sched.max_concurrency, recorded


def test_a_stale_report_carrying_a_claim_before_the_end_is_an_internal_error() -> None:
    sched, shell = with_shell(independent("a", "b", "c"), max_concurrency=1, max_retries=1)
    sched.start()
    assert time_out(sched, "a", retry=True) == ["b"]  # a's attempt 1 abandoned
    assert offer(sched, shell, 2) == ["c", "a"]
    steps(sched)
    before = (
        list(sched.states),
        list(sched.attempts),
        list(sched.ready),
        set(sched.offered),
        set(sched.claimed),
        sched.running,
        sched.final_ctx(),
    )
    with pytest.raises(InternalError, match="stale"):
        sched.completed(node(sched, "a"), 1, {"stale": 1}, node(sched, "c"))
    # A stale report of a node that never started, claiming, is no better.
    with pytest.raises(InternalError, match="stale"):
        sched.completed(node(sched, "c"), 1, {"stale": 1}, node(sched, "c"))
    after = (
        list(sched.states),
        list(sched.attempts),
        list(sched.ready),
        set(sched.offered),
        set(sched.claimed),
        sched.running,
        sched.final_ctx(),
    )
    assert after == before
    assert sched.take_transitions() == []
    assert sched.job_state is JobState.RUNNING


def test_a_stale_report_carrying_a_claim_after_the_end_returns_none_and_changes_nothing() -> None:
    sched, shell = with_shell(independent("a", "b", "c"), max_concurrency=1, max_retries=1)
    sched.start()
    assert offer(sched, shell, 2) == ["b", "c"]
    shell.take()
    sched.end(JobState.TIMED_OUT)
    steps(sched)
    before = (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.running)
    assert sched.completed(node(sched, "a"), 1, {"late": 1}, node(sched, "b")) is None
    assert sched.completed(node(sched, "a"), 2, {"late": 1}, node(sched, "c")) is None
    assert sched.completed(node(sched, "c"), 0, {"late": 1}, node(sched, "a")) is None
    assert (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.running) == before
    assert state_of(sched) == {"a": "cancelled", "b": "cancelled", "c": "skipped"}
    assert sched.take_transitions() == []
    assert sched.final_ctx() == {}


def test_a_claim_of_a_node_never_offered_is_an_internal_error() -> None:
    sched, _shell = with_shell(independent("a", "b", "c"), max_concurrency=1)
    sched.start()
    with pytest.raises(InternalError, match="without an offer"):
        report(sched, "a", claimed="b")


def test_the_concurrency_limit_holds_in_the_books_through_claims_and_failed_revokes() -> None:
    names_ = [f"t{i}" for i in range(12)]
    sched, shell = with_shell(independent(*names_), max_concurrency=3)
    sched.start()
    sched.take_transitions()
    pending: list[tuple[int, int, int]] = []  # (reporting node, attempt, claimed node)
    started_order = [0, 1, 2]  # real starts, the core's and the threads', in order
    rounds = 0
    while not sched.ended:
        rounds += 1
        assert rounds < 100
        new = sched.offer(4)
        shell.publish(new)
        live = sched.states.count(RUNNING)
        running = [
            n
            for n, s in enumerate(sched.states)
            if s is RUNNING and n not in {p[0] for p in pending}
        ]
        if rounds % 3 and running and shell.queue:
            # The oldest running attempt finishes and its thread takes an offer.
            n = running[0]
            taken = shell.take()
            started_order.append(taken)
            pending.append((n, sched.attempts[n], taken))
        elif running:
            # Another finishes without an offer; the core refills the slot.
            n = running[-1]
            started = sched.completed(n, sched.attempts[n], {})
            assert started is not None
            started_order.extend(started)
        if pending and rounds % 2:
            # The shell leaves a report in the mailbox as its thread takes
            # the offer: reports arrive in the order offers were taken.
            n, attempt, taken = pending.pop(0)
            started = sched.completed(n, attempt, {}, taken)
            assert started is not None
            started_order.extend(started)
        check_books(sched)
        assert most_running(sched.take_transitions(), live) <= 3
        if not pending and RUNNING not in sched.states:
            break
    assert sched.job_state is JobState.COMPLETED
    assert sched.attempts == [1] * 12
    # In real time, tasks started in queue order, by the core or by threads.
    assert started_order == list(range(12))
    assert any(not withdrawn for _, withdrawn in shell.revoked), "no revoke ever failed"


# -- a stop while a report that claims an offer is in flight ----------------------------------


def stop_with_a_claim_in_flight(cleanup: bool) -> tuple[Scheduler, Shell]:
    """a and b run, x is offered first; a's thread takes x, then b's failure stops the job.

    z, a cleanup task after b, then runs in a freed slot.
    """
    graph = graph_of([("a", []), ("b", []), ("x", []), ("c", []), ("z", ["b"])])
    shell = Shell()
    sched = Scheduler(
        graph,
        max_concurrency=2,
        max_retries=[0] * 5,
        continue_on_failure=[False] * 5,
        run_if=[
            "all_completed",
            "all_completed",
            "all_done" if cleanup else "all_completed",
            "all_completed",
            "all_done",
        ],
        revoke=shell.revoke,
    )
    assert names(sched, sched.start()) == ["b", "a"]  # b first: z depends on it
    assert offer(sched, shell, 2) == ["x", "c"]
    assert shell.take() == node(sched, "x")  # a's thread, as a finishes
    fail(sched, "b")  # handled before a's report: the stop
    check_books(sched)
    return sched, shell


def test_a_cleanup_task_taken_where_the_stop_cancelled_an_attempt_starts_on_its_report() -> None:
    sched, _shell = stop_with_a_claim_in_flight(cleanup=True)
    assert state_of(sched)["a"] == "cancelled"
    assert claimed_names(sched) == ["x"]
    # x runs on a's thread: until a's report records its start, nothing
    # else starts (z waits), so x has a's slot.
    assert state_of(sched)["z"] == "ready"
    assert sched.running == 0
    assert names(sched, sched.completed(node(sched, "a"), 1, {}, node(sched, "x"))) == ["z"]
    assert state_of(sched)["x"] == "running"
    assert state_of(sched)["z"] == "running"
    assert sched.attempts[node(sched, "x")] == 1
    check_books(sched)
    complete(sched, "x")
    complete(sched, "z")
    assert sched.job_state is JobState.FAILED
    assert sched.failure is not None
    assert sched.failure.task == "b"


def test_a_task_taken_where_the_stop_cancelled_an_attempt_is_cancelled_its_report_late() -> None:
    sched, _shell = stop_with_a_claim_in_flight(cleanup=False)
    assert state_of(sched)["x"] == "cancelled"  # its start recorded, then cancelled
    assert state_of(sched)["z"] == "running"
    # a's report is late; the start it names was settled by the stop.
    assert sched.completed(node(sched, "a"), 1, {}, node(sched, "x")) is None
    check_books(sched)
    complete(sched, "z")
    assert sched.job_state is JobState.FAILED
