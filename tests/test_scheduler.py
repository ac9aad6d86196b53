"""The scheduler core (``_scheduler.Scheduler``), driven by hand like the JobActor drives it.

No threads, no actors: every test builds a graph, feeds the core the calls
the JobActor would make, and checks the transitions it records and the
state it keeps. The last part is a hypothesis state machine that drives a
random DAG with random outcomes and checks the invariants after every step.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import immutables
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from daguerreo_actors._errors import InternalError
from daguerreo_actors._graph import Graph
from daguerreo_actors._scheduler import Scheduler, Transition, retry_allowed
from daguerreo_actors._states import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobState,
    TaskState,
)
from daguerreo_actors._task import Task
from daguerreo_actors._validation import build_graph

UNSCHEDULED = TaskState.UNSCHEDULED
READY = TaskState.READY
RUNNING = TaskState.RUNNING
COMPLETED = TaskState.COMPLETED
EXCEPTION = TaskState.EXCEPTION
TIMED_OUT = TaskState.TIMED_OUT
INVALID_RESULT = TaskState.INVALID_RESULT
FAILED = TaskState.FAILED
CANCELLED = TaskState.CANCELLED
SKIPPED = TaskState.SKIPPED

# -- helpers -------------------------------------------------------------------


def never_called(ctx: Mapping[Any, Any], is_active: Callable[[], bool]) -> Mapping[Any, Any]:
    raise AssertionError("the scheduler core never calls a task function")


def graph_of(spec: Sequence[tuple[str, Sequence[str]]]) -> Graph:
    """A validated graph from ``[(name, [dependency names]), ...]``."""
    _, graph = build_graph([Task(name, never_called, frozenset(deps)) for name, deps in spec])
    return graph


def chain(*names: str) -> Graph:
    return graph_of([(name, [names[i - 1]] if i else []) for i, name in enumerate(names)])


def independent(*names: str) -> Graph:
    return graph_of([(name, []) for name in names])


def scheduler(
    graph: Graph,
    *,
    max_concurrency: int = 10,
    max_retries: int | Sequence[int] = 0,
    continue_on_failure: bool | Sequence[bool] = False,
    ctx: Mapping[Any, Any] | None = None,
    record: bool = True,
    claim: Callable[[JobState], JobState] | None = None,
) -> Scheduler:
    n = len(graph)
    return Scheduler(
        graph,
        max_concurrency=max_concurrency,
        max_retries=[max_retries] * n if isinstance(max_retries, int) else max_retries,
        continue_on_failure=(
            [continue_on_failure] * n
            if isinstance(continue_on_failure, bool)
            else continue_on_failure
        ),
        ctx=ctx,
        record=record,
        decide_end=claim,
    )


def node(sched: Scheduler, name: str) -> int:
    return sched.graph.names.index(name)


def steps(sched: Scheduler) -> list[tuple[str, str]]:
    """The transitions recorded since the last call, as (task, new state)."""
    names = sched.graph.names
    return [(names[n], new.value) for n, _old, new, _attempt, _payload in sched.take_transitions()]


def steps_with_attempts(sched: Scheduler) -> list[tuple[str, str, str, int]]:
    """The transitions recorded since the last call, as (task, old, new, attempt)."""
    names = sched.graph.names
    return [
        (names[n], old.value, new.value, attempt)
        for n, old, new, attempt, _payload in sched.take_transitions()
    ]


def names(sched: Scheduler, nodes: Sequence[int] | None) -> list[str] | None:
    return None if nodes is None else [sched.graph.names[n] for n in nodes]


def complete(sched: Scheduler, name: str, result: Mapping[Any, Any] | None = None) -> list[str]:
    n = node(sched, name)
    started = sched.completed(n, sched.attempts[n], {} if result is None else result)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def fail(
    sched: Scheduler, name: str, exc: BaseException | None = None, *, retry: bool = False
) -> list[str]:
    n = node(sched, name)
    started = sched.failed(n, sched.attempts[n], exc or ValueError(name), retry)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def time_out(sched: Scheduler, name: str, *, retry: bool = False) -> list[str]:
    n = node(sched, name)
    started = sched.timed_out(n, sched.attempts[n], retry)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def state_of(sched: Scheduler) -> dict[str, str]:
    return {name: state.value for name, state in zip(sched.graph.names, sched.states, strict=True)}


def job_steps(sched: Scheduler) -> list[tuple[str, str]]:
    return [(old.value, new.value) for _pos, old, new in sched.take_job_transitions()]


# -- ordering and concurrency --------------------------------------------------


def test_three_independent_tasks_with_concurrency_one_run_strictly_one_after_another() -> None:
    # Ported from the original library's scheduler tests.
    sched = scheduler(independent("a", "b", "c"), max_concurrency=1)
    assert names(sched, sched.start()) == ["a"]
    assert complete(sched, "a") == ["b"]
    assert complete(sched, "b") == ["c"]
    assert complete(sched, "c") == []
    assert steps(sched) == [
        ("a", "ready"),
        ("b", "ready"),
        ("c", "ready"),
        ("a", "running"),
        ("a", "completed"),
        ("b", "running"),
        ("b", "completed"),
        ("c", "running"),
        ("c", "completed"),
    ]
    assert sched.job_state is JobState.COMPLETED


def test_a_task_becomes_ready_only_when_all_of_its_dependencies_completed() -> None:
    sched = scheduler(graph_of([("a", []), ("b", []), ("c", ["a", "b"])]))
    assert names(sched, sched.start()) == ["a", "b"]
    steps(sched)
    assert complete(sched, "a") == []
    assert state_of(sched)["c"] == "unscheduled"
    assert complete(sched, "b") == ["c"]
    assert steps(sched) == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "ready"),
        ("c", "running"),
    ]


def test_tasks_ready_at_once_are_all_ready_before_any_starts_most_dependents_first() -> None:
    # Roots: x (no dependent), y (2), z (1), w (2): queued y, w, z, x.
    sched = scheduler(
        graph_of(
            [
                ("x", []),
                ("y", []),
                ("z", []),
                ("w", []),
                ("y1", ["y"]),
                ("y2", ["y"]),
                ("z1", ["z"]),
                ("w1", ["w"]),
                ("w2", ["w"]),
            ]
        ),
        max_concurrency=2,
    )
    assert names(sched, sched.start()) == ["y", "w"]
    assert steps(sched) == [
        ("y", "ready"),
        ("w", "ready"),
        ("z", "ready"),
        ("x", "ready"),
        ("y", "running"),
        ("w", "running"),
    ]
    assert names(sched, list(sched.ready)) == ["z", "x"]


def test_dependents_released_together_are_queued_most_dependents_first() -> None:
    # a releases b (no dependent), c (one) and d (no dependent): c, b, d.
    sched = scheduler(
        graph_of([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["a"]), ("e", ["c"])]),
        max_concurrency=1,
    )
    sched.start()
    steps(sched)
    assert complete(sched, "a") == ["c"]
    assert steps(sched) == [
        ("a", "completed"),
        ("c", "ready"),
        ("b", "ready"),
        ("d", "ready"),
        ("c", "running"),
    ]
    assert names(sched, list(sched.ready)) == ["b", "d"]


def test_at_most_max_concurrency_tasks_run_and_the_rest_wait_in_fifo_order() -> None:
    sched = scheduler(independent("a", "b", "c", "d", "e"), max_concurrency=2)
    assert names(sched, sched.start()) == ["a", "b"]
    assert sched.running == 2
    assert names(sched, list(sched.ready)) == ["c", "d", "e"]
    assert complete(sched, "b") == ["c"]
    assert complete(sched, "a") == ["d"]
    assert complete(sched, "c") == ["e"]
    assert sched.running == 2
    assert complete(sched, "d") == []
    assert complete(sched, "e") == []
    assert sched.running == 0
    assert sched.job_state is JobState.COMPLETED


@pytest.mark.parametrize(
    "free_slot",
    [
        pytest.param(lambda s: complete(s, "a"), id="completion"),
        pytest.param(lambda s: fail(s, "a", retry=True), id="exception-retried"),
        pytest.param(lambda s: fail(s, "a", retry=False), id="exception-failed"),
        pytest.param(lambda s: time_out(s, "a", retry=True), id="timeout-retried"),
        pytest.param(lambda s: time_out(s, "a", retry=False), id="timeout-failed"),
    ],
)
def test_every_freed_slot_starts_the_next_waiting_task_whatever_freed_it(
    free_slot: Callable[[Scheduler], list[str]],
) -> None:
    sched = scheduler(
        independent("a", "b", "c"),
        max_concurrency=1,
        max_retries=1,
        continue_on_failure=True,
    )
    assert names(sched, sched.start()) == ["a"]
    assert free_slot(sched) == ["b"]
    assert sched.running == 1
    assert state_of(sched)["b"] == "running"


# -- retries and failures ------------------------------------------------------


def test_an_exception_is_retried_while_attempts_remain_then_fails_the_task_and_the_job() -> None:
    sched = scheduler(chain("a", "b"), max_retries=2)
    sched.start()
    first, second, last = ValueError("1"), ValueError("2"), ValueError("3")
    assert fail(sched, "a", first, retry=True) == ["a"]
    assert fail(sched, "a", second, retry=True) == ["a"]
    assert sched.attempts[node(sched, "a")] == 3
    assert fail(sched, "a", last, retry=False) == []
    assert steps_with_attempts(sched) == [
        ("a", "unscheduled", "ready", 0),
        ("a", "ready", "running", 1),
        ("a", "running", "exception", 1),
        ("a", "exception", "ready", 1),
        ("a", "ready", "running", 2),
        ("a", "running", "exception", 2),
        ("a", "exception", "ready", 2),
        ("a", "ready", "running", 3),
        ("a", "running", "exception", 3),
        ("a", "exception", "failed", 3),
        ("b", "unscheduled", "skipped", 0),
    ]
    assert sched.job_state is JobState.FAILED
    assert sched.failed_task == node(sched, "a")
    assert sched.failure_reason is EXCEPTION
    assert sched.exception is last


def test_the_exception_transition_carries_the_exception_as_payload() -> None:
    sched = scheduler(independent("a"), max_retries=1)
    sched.start()
    exc = ValueError("boom")
    fail(sched, "a", exc, retry=True)
    payloads = {(old, new): payload for _n, old, new, _a, payload in sched.take_transitions()}
    assert payloads[(RUNNING, EXCEPTION)] is exc


def test_a_timeout_is_retried_like_an_exception_and_failing_by_timeout_leaves_no_exception() -> (
    None
):
    sched = scheduler(independent("a"), max_retries=1)
    sched.start()
    assert fail(sched, "a", ValueError("first"), retry=True) == ["a"]
    assert time_out(sched, "a", retry=False) == []
    assert steps_with_attempts(sched)[-3:] == [
        ("a", "ready", "running", 2),
        ("a", "running", "timed_out", 2),
        ("a", "timed_out", "failed", 2),
    ]
    assert sched.job_state is JobState.FAILED
    assert sched.failed_task == 0
    assert sched.failure_reason is TIMED_OUT
    assert sched.exception is None


def test_a_timed_out_attempt_is_retried_with_a_new_attempt_number() -> None:
    sched = scheduler(independent("a"), max_retries=1)
    sched.start()
    assert time_out(sched, "a", retry=True) == ["a"]
    assert steps_with_attempts(sched) == [
        ("a", "unscheduled", "ready", 0),
        ("a", "ready", "running", 1),
        ("a", "running", "timed_out", 1),
        ("a", "timed_out", "ready", 1),
        ("a", "ready", "running", 2),
    ]
    assert complete(sched, "a", {"x": 1}) == []
    assert sched.job_state is JobState.COMPLETED
    assert sched.attempts == [2]


@pytest.mark.parametrize("max_retries", [0, 1, 2])
@pytest.mark.parametrize("how", ["exception", "timeout"])
def test_the_core_refuses_a_retry_beyond_max_retries_plus_one_attempts(
    max_retries: int, how: str
) -> None:
    sched = scheduler(independent("a"), max_retries=max_retries)
    sched.start()
    for _ in range(max_retries):
        if how == "exception":
            fail(sched, "a", retry=True)
        else:
            time_out(sched, "a", retry=True)
    assert sched.attempts == [max_retries + 1]
    assert not retry_allowed(sched.attempts[0], max_retries)
    refused: Callable[[], object] = (
        (lambda: sched.failed(0, max_retries + 1, ValueError("x"), True))
        if how == "exception"
        else (lambda: sched.timed_out(0, max_retries + 1, True))
    )
    with pytest.raises(InternalError, match="refused"):
        refused()
    assert sched.attempts == [max_retries + 1]


def test_ending_the_job_after_a_refused_retry_leaves_every_task_terminal() -> None:
    # What the JobActor does with the InternalError: end the job FAILED.
    sched = scheduler(chain("a", "b"), max_retries=0)
    sched.start()
    with pytest.raises(InternalError):
        sched.failed(0, 1, ValueError("x"), True)
    error = InternalError("refused")
    assert sched.end(JobState.FAILED, exception=error) is True
    assert all(state.is_terminal for state in sched.states), state_of(sched)
    assert sched.running == 0
    assert sched.job_state is JobState.FAILED
    assert sched.exception is error
    for _n, old, new, _a, _p in sched.take_transitions():
        assert (old, new) in TASK_TRANSITIONS


def test_the_retry_policy_allows_max_retries_plus_one_attempts() -> None:
    assert [retry_allowed(attempts, 2) for attempts in (1, 2, 3)] == [True, True, False]
    assert not retry_allowed(1, 0)


def test_a_retried_task_goes_to_the_back_of_the_ready_queue() -> None:
    sched = scheduler(independent("a", "b", "c"), max_concurrency=1, max_retries=1)
    sched.start()
    assert fail(sched, "a", retry=True) == ["b"]
    assert names(sched, list(sched.ready)) == ["c", "a"]
    assert complete(sched, "b") == ["c"]
    assert complete(sched, "c") == ["a"]
    assert complete(sched, "a") == []
    assert sched.job_state is JobState.COMPLETED
    assert sched.attempts == [2, 1, 1]


def test_a_non_mapping_result_is_an_invalid_result_with_no_retry_and_fails_the_job() -> None:
    sched = scheduler(graph_of([("a", []), ("b", []), ("c", ["a"])]), max_retries=3)
    sched.start()
    steps(sched)
    assert sched.invalid_result(0, 1, [1, 2]) == []
    assert steps_with_attempts(sched) == [
        ("a", "running", "invalid_result", 1),
        ("b", "running", "cancelled", 1),
        ("c", "unscheduled", "skipped", 0),
    ]
    assert sched.job_state is JobState.FAILED
    assert sched.failed_task == 0
    assert sched.failure_reason is INVALID_RESULT
    assert sched.invalid_result_value == [1, 2]
    assert sched.exception is None
    assert sched.attempts[0] == 1


def test_a_failed_task_fails_the_job_at_once_cancelling_running_and_skipping_waiting_tasks() -> (
    None
):
    sched = scheduler(
        graph_of([("a", []), ("b", []), ("c", []), ("d", ["a"])]),
        max_concurrency=2,
    )
    sched.start()
    steps(sched)
    exc = RuntimeError("b broke")
    assert fail(sched, "b", exc) == []
    assert steps(sched) == [
        ("b", "exception"),
        ("b", "failed"),
        ("a", "cancelled"),
        ("c", "skipped"),
        ("d", "skipped"),
    ]
    assert sched.job_state is JobState.FAILED
    assert (sched.failed_task, sched.failure_reason, sched.exception) == (1, EXCEPTION, exc)
    assert sched.running == 0
    assert not sched.ready
    assert job_steps(sched) == [("idle", "running"), ("running", "failed")]


@pytest.mark.parametrize("how", ["exception", "timeout"])
def test_a_failed_task_with_continue_on_failure_lets_the_job_go_on_and_complete(how: str) -> None:
    sched = scheduler(
        graph_of([("a", []), ("b", []), ("c", ["a"])]),
        max_concurrency=1,
        continue_on_failure=[False, True, False],
    )
    assert names(sched, sched.start()) == ["a"]
    assert complete(sched, "a") == ["b"]  # c, released by a, queues behind b
    if how == "exception":
        assert fail(sched, "b") == ["c"]
    else:
        assert time_out(sched, "b") == ["c"]
    assert sched.job_state is JobState.RUNNING
    assert complete(sched, "c") == []
    assert state_of(sched) == {"a": "completed", "b": "failed", "c": "completed"}
    assert sched.job_state is JobState.COMPLETED
    assert sched.failed_task is None
    assert sched.failure_reason is None
    assert sched.exception is None


@pytest.mark.parametrize("how", ["exception", "timeout"])
def test_a_continue_on_failure_task_failing_last_completes_the_job(how: str) -> None:
    sched = scheduler(
        graph_of([("a", []), ("b", [])]),
        max_concurrency=1,
        continue_on_failure=[False, True],
    )
    sched.start()
    assert complete(sched, "a") == ["b"]
    if how == "exception":
        assert fail(sched, "b") == []
    else:
        assert time_out(sched, "b") == []
    assert state_of(sched) == {"a": "completed", "b": "failed"}
    assert sched.job_state is JobState.COMPLETED
    assert sched.failed_task is None
    assert job_steps(sched) == [("idle", "running"), ("running", "completed")]


def test_a_continue_on_failure_task_failing_first_does_not_stop_the_others() -> None:
    sched = scheduler(
        graph_of([("a", []), ("b", []), ("c", ["b"])]),
        max_concurrency=1,
        continue_on_failure=[True, False, False],
    )
    assert names(sched, sched.start()) == ["b"]
    assert complete(sched, "b") == ["a"]
    assert fail(sched, "a") == ["c"]
    assert sched.job_state is JobState.RUNNING
    assert complete(sched, "c") == []
    assert sched.job_state is JobState.COMPLETED


# -- ending the job ------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.TIMED_OUT, JobState.CANCELLED])
def test_ending_the_job_cancels_running_tasks_and_skips_waiting_and_unscheduled_ones(
    state: JobState,
) -> None:
    sched = scheduler(
        graph_of([("a", []), ("b", []), ("c", []), ("d", ["a"]), ("e", [])]),
        max_concurrency=2,
    )
    sched.start()
    complete(sched, "a")  # d becomes ready, c starts
    steps(sched)
    job_steps(sched)
    assert sched.end(state) is True
    assert steps(sched) == [
        ("b", "cancelled"),
        ("c", "cancelled"),
        ("d", "skipped"),
        ("e", "skipped"),
    ]
    assert job_steps(sched) == [("running", state.value)]
    assert sched.job_state is state
    assert sched.running == 0
    assert not sched.ready
    assert sched.failed_task is None
    assert sched.failure_reason is None
    assert sched.exception is None


def test_a_second_end_returns_false_and_changes_nothing() -> None:
    sched = scheduler(independent("a", "b"), max_concurrency=1)
    sched.start()
    assert sched.end(JobState.CANCELLED) is True
    steps(sched)
    job_steps(sched)
    before = (list(sched.states), list(sched.attempts), sched.ctx, sched.running)
    assert sched.end(JobState.TIMED_OUT) is False
    assert sched.end(JobState.FAILED, exception=RuntimeError("late")) is False
    assert sched.job_state is JobState.CANCELLED
    assert sched.exception is None
    assert (list(sched.states), list(sched.attempts), sched.ctx, sched.running) == before
    assert sched.take_transitions() == []
    assert sched.take_job_transitions() == []


def test_an_end_after_the_job_completed_returns_false() -> None:
    sched = scheduler(independent("a"))
    sched.start()
    complete(sched, "a")
    assert sched.end(JobState.CANCELLED) is False
    assert sched.job_state is JobState.COMPLETED


def test_after_the_end_no_task_starts_and_late_calls_return_none() -> None:
    sched = scheduler(independent("a", "b", "c"), max_concurrency=2, max_retries=3)
    sched.start()
    sched.end(JobState.TIMED_OUT)
    steps(sched)
    assert sched.completed(0, 1, {"late": True}) is None
    assert sched.failed(1, 1, ValueError("late"), True) is None
    assert sched.timed_out(0, 1, True) is None
    assert sched.invalid_result(1, 1, 42) is None
    assert sched.take_transitions() == []
    assert state_of(sched) == {"a": "cancelled", "b": "cancelled", "c": "skipped"}
    assert "late" not in sched.ctx
    assert sched.final_ctx() == {}
    assert sched.job_state is JobState.TIMED_OUT


def test_an_end_with_an_exception_records_it_as_the_job_exception_without_a_task() -> None:
    sched = scheduler(independent("a"))
    sched.start()
    error = InternalError("broken")
    assert sched.end(JobState.FAILED, exception=error) is True
    assert sched.job_state is JobState.FAILED
    assert sched.exception is error
    assert sched.failed_task is None
    assert sched.states == [CANCELLED]


# -- stale messages ------------------------------------------------------------


def test_stale_calls_about_an_attempt_no_longer_running_return_none_and_change_nothing() -> None:
    sched = scheduler(independent("a", "b"), max_concurrency=1, max_retries=2)
    sched.start()
    time_out(sched, "a", retry=True)  # a: attempt 1 timed out, back in the queue
    assert names(sched, [n for n in range(2) if sched.states[n] is RUNNING]) == ["b"]
    steps(sched)
    before = (list(sched.states), list(sched.attempts), sched.ctx, list(sched.ready))
    # a's first attempt, now abandoned; b's attempt 2, which never started.
    assert sched.completed(0, 1, {"stale": 1}) is None
    assert sched.failed(0, 1, ValueError("stale"), True) is None
    assert sched.timed_out(0, 1, True) is None
    assert sched.invalid_result(0, 1, "stale") is None
    assert sched.completed(1, 2, {"stale": 2}) is None
    assert sched.completed(1, 0, {"stale": 0}) is None
    assert (list(sched.states), list(sched.attempts), sched.ctx, list(sched.ready)) == before
    assert sched.take_transitions() == []
    assert "stale" not in sched.ctx
    assert "stale" not in sched.final_ctx()


def test_calls_before_start_are_stale() -> None:
    sched = scheduler(independent("a"))
    assert sched.completed(0, 0, {"x": 1}) is None
    assert sched.completed(0, 1, {"x": 1}) is None
    assert sched.job_state is JobState.IDLE
    assert sched.take_transitions() == []


def test_a_late_result_of_a_timed_out_attempt_is_not_merged() -> None:
    sched = scheduler(independent("a"), max_retries=1, ctx={"seed": 0})
    sched.start()
    time_out(sched, "a", retry=True)
    assert sched.completed(0, 1, {"from_attempt": 1}) is None
    assert complete(sched, "a", {"from_attempt": 2}) == []
    assert dict(sched.ctx) == {"seed": 0, "from_attempt": 2}
    assert sched.final_ctx() == {"seed": 0, "from_attempt": 2}


def test_a_late_result_after_a_final_timeout_is_not_merged() -> None:
    sched = scheduler(graph_of([("a", []), ("b", [])]), continue_on_failure=[True, False])
    sched.start()
    time_out(sched, "a")
    assert sched.completed(0, 1, {"late": True}) is None
    complete(sched, "b", {"b": 1})
    assert sched.job_state is JobState.COMPLETED
    assert sched.final_ctx() == {"b": 1}
    assert "late" not in sched.ctx


# -- attempts ------------------------------------------------------------------


def test_attempt_numbers_count_the_attempts_started_so_far() -> None:
    sched = scheduler(chain("a", "b"), max_retries=1)
    sched.start()
    fail(sched, "a", retry=True)
    complete(sched, "a")
    complete(sched, "b")
    assert steps_with_attempts(sched) == [
        ("a", "unscheduled", "ready", 0),
        ("a", "ready", "running", 1),
        ("a", "running", "exception", 1),
        ("a", "exception", "ready", 1),
        ("a", "ready", "running", 2),
        ("a", "running", "completed", 2),
        ("b", "unscheduled", "ready", 0),
        ("b", "ready", "running", 1),
        ("b", "running", "completed", 1),
    ]
    assert sched.attempts == [2, 1]


def test_a_skipped_task_after_a_retry_keeps_its_attempt_count() -> None:
    sched = scheduler(independent("a", "b"), max_concurrency=1, max_retries=1)
    sched.start()
    fail(sched, "a", retry=True)  # b runs, a waits for its second attempt
    steps(sched)
    sched.end(JobState.CANCELLED)
    assert steps_with_attempts(sched) == [
        ("a", "ready", "skipped", 1),
        ("b", "running", "cancelled", 1),
    ]


# -- job transitions and the claim hook ----------------------------------------


def test_the_job_goes_idle_running_at_start_and_running_to_terminal_at_the_end() -> None:
    sched = scheduler(independent("a"))
    assert sched.job_state is JobState.IDLE
    sched.start()
    assert sched.job_state is JobState.RUNNING
    assert job_steps(sched) == [("idle", "running")]
    complete(sched, "a")
    assert job_steps(sched) == [("running", "completed")]


def test_job_transitions_record_where_they_happened_among_task_transitions() -> None:
    sched = scheduler(independent("a"))
    sched.start()
    complete(sched, "a")
    transitions = sched.take_transitions()
    positions = [(pos, new) for pos, _old, new in sched.take_job_transitions()]
    assert positions == [(0, JobState.RUNNING), (len(transitions), JobState.COMPLETED)]


def test_an_empty_graph_completes_at_start() -> None:
    sched = scheduler(graph_of([]), ctx={"k": "v"})
    assert sched.start() == []
    assert sched.job_state is JobState.COMPLETED
    assert job_steps(sched) == [("idle", "running"), ("running", "completed")]
    assert sched.take_transitions() == []
    assert sched.final_ctx() == {"k": "v"}


def test_a_claim_returning_cancelled_turns_a_completing_job_into_cancelled() -> None:
    claimed: list[JobState] = []

    def claim(state: JobState) -> JobState:
        claimed.append(state)
        return JobState.CANCELLED

    sched = scheduler(independent("a"), claim=claim)
    sched.start()
    assert complete(sched, "a", {"x": 1}) == []
    assert claimed == [JobState.COMPLETED]
    assert sched.job_state is JobState.CANCELLED
    assert job_steps(sched) == [("idle", "running"), ("running", "cancelled")]
    assert sched.failed_task is None
    assert sched.failure_reason is None
    assert sched.exception is None
    assert sched.invalid_result_value is None
    assert sched.states == [COMPLETED]


def test_a_claim_returning_cancelled_turns_a_failing_job_into_cancelled_with_no_failure() -> None:
    sched = scheduler(independent("a", "b"), claim=lambda _state: JobState.CANCELLED)
    sched.start()
    fail(sched, "a", ValueError("a broke"))
    assert sched.job_state is JobState.CANCELLED
    assert sched.failed_task is None
    assert sched.failure_reason is None
    assert sched.exception is None
    assert sched.states == [FAILED, CANCELLED]


def test_the_claim_sees_the_state_of_an_outside_end() -> None:
    claimed: list[JobState] = []

    def claim(state: JobState) -> JobState:
        claimed.append(state)
        return state

    sched = scheduler(independent("a"), claim=claim)
    sched.start()
    sched.end(JobState.TIMED_OUT)
    assert claimed == [JobState.TIMED_OUT]
    assert sched.job_state is JobState.TIMED_OUT


# -- ctx -----------------------------------------------------------------------


def test_ctx_holds_the_initial_ctx_and_every_completed_output() -> None:
    sched = scheduler(chain("a", "b"), ctx={"seed": 1})
    sched.start()
    assert isinstance(sched.ctx, immutables.Map)
    assert dict(sched.ctx) == {"seed": 1}
    complete(sched, "a", {"a": 1})
    assert dict(sched.ctx) == {"seed": 1, "a": 1}
    complete(sched, "b", {"b": 2, "seed": 3})
    assert dict(sched.ctx) == {"seed": 3, "a": 1, "b": 2}


def test_a_ctx_snapshot_is_unchanged_by_later_merges() -> None:
    sched = scheduler(chain("a", "b"), ctx={"seed": 1})
    sched.start()
    snapshot = sched.ctx
    complete(sched, "a", {"a": 1, "seed": 2})
    second = sched.ctx
    complete(sched, "b", {"b": 2})
    assert dict(snapshot) == {"seed": 1}
    assert dict(second) == {"seed": 2, "a": 1}


def test_final_ctx_is_a_dict_in_completion_order_later_outputs_overwriting_earlier() -> None:
    sched = scheduler(independent("a", "b", "c"), ctx={"seed": 0, "shared": "initial"})
    sched.start()
    complete(sched, "c", {"c": 3, "shared": "c"})
    complete(sched, "a", {"a": 1})
    complete(sched, "b", {"b": 2, "shared": "b"})
    final = sched.final_ctx()
    assert type(final) is dict
    assert final == {"seed": 0, "shared": "b", "c": 3, "a": 1, "b": 2}
    assert list(final) == ["seed", "shared", "c", "a", "b"]
    assert dict(sched.ctx) == final


def test_an_empty_output_merges_nothing() -> None:
    sched = scheduler(independent("a"), ctx={"seed": 0})
    sched.start()
    before = sched.ctx
    complete(sched, "a", {})
    assert sched.ctx == before
    assert sched.final_ctx() == {"seed": 0}


def test_ctx_accepts_mappings_that_are_not_dicts() -> None:
    # The core's API takes any Mapping, both as the initial ctx and as a
    # result; a mappingproxy must merge its items, not be read as pairs.
    sched = scheduler(chain("a", "b"), ctx=types.MappingProxyType({"xy": 0}))
    sched.start()
    complete(sched, "a", types.MappingProxyType({"ab": 1}))
    complete(sched, "b", immutables.Map({"cd": 2}))
    assert dict(sched.ctx) == {"xy": 0, "ab": 1, "cd": 2}
    assert sched.final_ctx() == {"xy": 0, "ab": 1, "cd": 2}


# -- recording -----------------------------------------------------------------


def test_with_record_off_only_failure_transitions_are_recorded() -> None:
    sched = scheduler(
        graph_of([("a", []), ("b", []), ("c", []), ("d", [])]),
        max_retries=1,
        record=False,
    )
    sched.start()
    fail(sched, "a", retry=True)
    time_out(sched, "b", retry=True)
    complete(sched, "c")
    sched.invalid_result(node(sched, "d"), 1, "nope")
    recorded = {(old, new) for _n, old, new, _a, _p in sched.take_transitions()}
    assert recorded == {
        (RUNNING, EXCEPTION),
        (RUNNING, TIMED_OUT),
        (RUNNING, INVALID_RESULT),
    }
    assert job_steps(sched) == [("idle", "running"), ("running", "failed")]

    sched = scheduler(independent("a", "b"), record=False, max_concurrency=1)
    sched.start()
    time_out(sched, "a")
    assert [(old, new) for _n, old, new, _a, _p in sched.take_transitions()] == [
        (RUNNING, TIMED_OUT),
        (TIMED_OUT, FAILED),
    ]


# -- construction --------------------------------------------------------------


def test_the_constructor_wants_one_setting_per_node_and_a_positive_concurrency() -> None:
    graph = independent("a", "b")
    with pytest.raises(ValueError, match="per node"):
        Scheduler(graph, max_concurrency=1, max_retries=[0], continue_on_failure=[False, False])
    with pytest.raises(ValueError, match="per node"):
        Scheduler(graph, max_concurrency=1, max_retries=[0, 0], continue_on_failure=[False])
    with pytest.raises(ValueError, match="max_concurrency"):
        Scheduler(graph, max_concurrency=0, max_retries=[0, 0], continue_on_failure=[False] * 2)


# -- the state machine ---------------------------------------------------------

NON_TERMINAL = frozenset(state for state in TaskState if not state.is_terminal)


class SchedulerMachine(RuleBasedStateMachine):
    """A random DAG under random outcomes; the invariants hold after every step."""

    sched: Scheduler
    max_retries: list[int]
    continue_on_failure: list[bool]
    model_states: list[TaskState]
    model_attempts: list[int]
    model_job: JobState
    model_ctx: dict[str, Any]
    counter: int
    built: bool = False

    @initialize(data=st.data())
    def build(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(0, 15), label="nodes")
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
        )
        self.model_states = [UNSCHEDULED] * n
        self.model_attempts = [0] * n
        self.model_job = JobState.IDLE
        self.model_ctx = {"seed": -1}
        self.counter = 0
        self.built = True
        self._absorb(self.sched.start(), ended_before=False)

    # -- helpers --

    def _absorb(self, started: list[int] | None, *, ended_before: bool) -> None:
        """Check what the last call recorded against the model, and update it."""
        sched = self.sched
        transitions: list[Transition] = sched.take_transitions()
        job_transitions = sched.take_job_transitions()
        if started is None:
            assert transitions == []
            assert job_transitions == []
            return
        if ended_before:
            assert started == []
        for n, old, new, attempt, _payload in transitions:
            assert (old, new) in TASK_TRANSITIONS, (n, old, new)
            assert old is self.model_states[n], (n, old, self.model_states[n])
            if new is RUNNING:
                assert not ended_before, "a task started after the end"
                self.model_attempts[n] += 1
            assert attempt == self.model_attempts[n], (n, old, new, attempt)
            self.model_states[n] = new
        assert started == [n for n, _old, new, _a, _p in transitions if new is RUNNING]
        for position, old, new in job_transitions:
            assert 0 <= position <= len(transitions)
            assert (old, new) in JOB_TRANSITIONS
            assert old is self.model_job
            self.model_job = new
        assert self.model_job is sched.job_state
        assert self.model_states == sched.states
        assert self.model_attempts == sched.attempts

    def _running(self) -> list[int]:
        return [n for n, state in enumerate(self.sched.states) if state is RUNNING]

    def _pick_running(self, pick: int) -> int:
        running = self._running()
        return running[pick % len(running)]

    def _can_act(self) -> bool:
        return self.built and not self.sched.ended and bool(self._running())

    def _check_failure(self, n: int, reason: TaskState, exc: BaseException | None) -> None:
        sched = self.sched
        if sched.states[n] is FAILED and not self.continue_on_failure[n]:
            assert sched.job_state is JobState.FAILED
            assert sched.failed_task == n
            assert sched.failure_reason is reason
            assert sched.exception is exc

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

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000))
    def fail_one(self, pick: int) -> None:
        n = self._pick_running(pick)
        attempt = self.sched.attempts[n]
        retry = retry_allowed(attempt, self.max_retries[n])
        exc = ValueError(f"t{n} attempt {attempt}")
        self._absorb(self.sched.failed(n, attempt, exc, retry), ended_before=False)
        assert self.sched.states[n] in ((READY, RUNNING) if retry else (FAILED,))
        self._check_failure(n, EXCEPTION, exc)

    @precondition(lambda self: self._can_act())
    @rule(pick=st.integers(0, 1000))
    def time_one_out(self, pick: int) -> None:
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
        assert self.sched.failed_task == n
        assert self.sched.failure_reason is INVALID_RESULT
        assert self.sched.invalid_result_value == value

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

    @precondition(lambda self: self.built and len(self.sched.graph) > 0)
    @rule(
        pick=st.integers(0, 1000),
        offset=st.sampled_from([-1, 0, 1]),
        call=st.sampled_from(["completed", "failed", "timed_out", "invalid_result"]),
    )
    def send_a_stale_message(self, pick: int, offset: int, call: str) -> None:
        sched = self.sched
        n = pick % len(sched.graph)
        attempt = sched.attempts[n] + offset
        if sched.states[n] is RUNNING and not sched.ended and offset == 0:
            attempt += 1  # the current attempt is not stale: make it a later one
        before = (
            list(sched.states),
            list(sched.attempts),
            sched.ctx,
            list(sched.ready),
            sched.running,
            sched.job_state,
        )
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
        after = (
            list(sched.states),
            list(sched.attempts),
            sched.ctx,
            list(sched.ready),
            sched.running,
            sched.job_state,
        )
        assert after == before

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
        assert sorted(sched.ready) == [n for n, s in enumerate(states) if s is READY]
        assert len(set(sched.ready)) == len(sched.ready)
        if not sched.ended:
            if running < sched.max_concurrency:
                assert not sched.ready
            # Something must be running, or nothing could ever move again.
            assert running >= 1

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
            if state not in (UNSCHEDULED, SKIPPED):
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
        assert dict(self.sched.ctx) == self.model_ctx
        assert self.sched.final_ctx() == self.model_ctx
        assert list(self.sched.final_ctx()) == list(self.model_ctx)


SchedulerMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=50, deadline=None
)
TestSchedulerStateMachine = SchedulerMachine.TestCase
