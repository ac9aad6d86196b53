"""The scheduler core (``_scheduler.Scheduler``): retries, failures, the end, stale calls.

No threads, no actors: every test builds a graph, feeds the core the calls
the JobActor would make, and checks the transitions it records and the
state it keeps. The helpers that drive it are in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import (
    CANCELLED,
    EXCEPTION,
    INVALID_RESULT,
    RUNNING,
    TIMED_OUT,
    chain,
    complete,
    fail,
    failed_node,
    failure_reason,
    fields,
    graph_of,
    independent,
    invalid_value,
    job_exception,
    job_steps,
    names,
    node,
    scheduler,
    state_of,
    steps,
    steps_with_attempts,
    time_out,
)

from daguerreo_actors._errors import InternalError
from daguerreo_actors._scheduler import retry_allowed
from daguerreo_actors._states import TASK_TRANSITIONS, JobState

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
        ("b", "unscheduled", "upstream_failed", 0),
    ]
    assert sched.job_state is JobState.FAILED
    assert failed_node(sched) == node(sched, "a")
    assert failure_reason(sched) is EXCEPTION
    assert job_exception(sched) is last


def test_the_exception_transition_carries_the_exception_and_no_result() -> None:
    sched = scheduler(independent("a"), max_retries=1)
    sched.start()
    exc = ValueError("boom")
    fail(sched, "a", exc, retry=True)
    records = {(t.old, t.new): t for t in sched.take_transitions()}
    assert records[(RUNNING, EXCEPTION)].exception is exc
    assert records[(RUNNING, EXCEPTION)].result is None


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
    assert failed_node(sched) == 0
    assert failure_reason(sched) is TIMED_OUT
    assert job_exception(sched) is None


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
    assert job_exception(sched) is error
    for _n, old, new, _a in map(fields, sched.take_transitions()):
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
        ("c", "unscheduled", "upstream_failed", 0),
    ]
    assert sched.job_state is JobState.FAILED
    assert failed_node(sched) == 0
    assert failure_reason(sched) is INVALID_RESULT
    assert invalid_value(sched) == [1, 2]
    assert job_exception(sched) is None
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
    assert (failed_node(sched), failure_reason(sched), job_exception(sched)) == (1, EXCEPTION, exc)
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
    assert failed_node(sched) is None
    assert failure_reason(sched) is None
    assert job_exception(sched) is None


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
    assert failed_node(sched) is None
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
    assert failed_node(sched) is None
    assert failure_reason(sched) is None
    assert job_exception(sched) is None


def test_a_second_end_returns_false_and_changes_nothing() -> None:
    sched = scheduler(independent("a", "b"), max_concurrency=1)
    sched.start()
    assert sched.end(JobState.CANCELLED) is True
    steps(sched)
    job_steps(sched)
    before = (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.running)
    assert sched.end(JobState.TIMED_OUT) is False
    assert sched.end(JobState.FAILED, exception=RuntimeError("late")) is False
    assert sched.job_state is JobState.CANCELLED
    assert job_exception(sched) is None
    assert (list(sched.states), list(sched.attempts), sched.final_ctx(), sched.running) == before
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
    assert "late" not in sched.final_ctx()
    assert sched.final_ctx() == {}
    assert sched.job_state is JobState.TIMED_OUT


def test_an_end_with_an_exception_records_it_as_the_job_exception_without_a_task() -> None:
    sched = scheduler(independent("a"))
    sched.start()
    error = InternalError("broken")
    assert sched.end(JobState.FAILED, exception=error) is True
    assert sched.job_state is JobState.FAILED
    assert job_exception(sched) is error
    assert failed_node(sched) is None
    assert sched.states == [CANCELLED]


# -- stale messages ------------------------------------------------------------


def test_stale_calls_about_an_attempt_no_longer_running_return_none_and_change_nothing() -> None:
    sched = scheduler(independent("a", "b"), max_concurrency=1, max_retries=2)
    sched.start()
    time_out(sched, "a", retry=True)  # a: attempt 1 timed out, back in the queue
    assert names(sched, [n for n in range(2) if sched.states[n] is RUNNING]) == ["b"]
    steps(sched)
    before = (list(sched.states), list(sched.attempts), sched.final_ctx(), list(sched.ready))
    # a's first attempt, now abandoned; b's attempt 2, which never started.
    assert sched.completed(0, 1, {"stale": 1}) is None
    assert sched.failed(0, 1, ValueError("stale"), True) is None
    assert sched.timed_out(0, 1, True) is None
    assert sched.invalid_result(0, 1, "stale") is None
    assert sched.completed(1, 2, {"stale": 2}) is None
    assert sched.completed(1, 0, {"stale": 0}) is None
    assert (
        list(sched.states),
        list(sched.attempts),
        sched.final_ctx(),
        list(sched.ready),
    ) == before
    assert sched.take_transitions() == []
    assert "stale" not in sched.final_ctx()
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
    assert sched.final_ctx() == {"seed": 0, "from_attempt": 2}
    assert sched.final_ctx() == {"seed": 0, "from_attempt": 2}


def test_a_late_result_after_a_final_timeout_is_not_merged() -> None:
    sched = scheduler(graph_of([("a", []), ("b", [])]), continue_on_failure=[True, False])
    sched.start()
    time_out(sched, "a")
    assert sched.completed(0, 1, {"late": True}) is None
    complete(sched, "b", {"b": 1})
    assert sched.job_state is JobState.COMPLETED
    assert sched.final_ctx() == {"b": 1}
    assert "late" not in sched.final_ctx()


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
