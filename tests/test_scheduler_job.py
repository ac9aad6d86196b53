"""The scheduler core (``_scheduler.Scheduler``): the job, its ctx, recording, construction.

No threads, no actors: every test builds a graph, feeds the core the calls
the JobActor would make, and checks the transitions it records and the
state it keeps. The helpers that drive it are in ``helpers.py``.
"""

from __future__ import annotations

import types

import immutables
import pytest
from helpers import (
    CANCELLED,
    COMPLETED,
    EXCEPTION,
    FAILED,
    INVALID_RESULT,
    RUNNING,
    TIMED_OUT,
    chain,
    complete,
    fail,
    failed_node,
    failure_reason,
    graph_of,
    independent,
    invalid_value,
    job_exception,
    job_steps,
    node,
    scheduler,
    time_out,
)

from daguerreo_actors._scheduler import Scheduler
from daguerreo_actors._states import JobState

# -- job transitions and the decide_end hook -----------------------------------


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


def test_a_decide_end_returning_cancelled_turns_a_completing_job_into_cancelled() -> None:
    decided: list[JobState] = []

    def decide_end(state: JobState) -> JobState:
        decided.append(state)
        return JobState.CANCELLED

    sched = scheduler(independent("a"), decide_end=decide_end)
    sched.start()
    assert complete(sched, "a", {"x": 1}) == []
    assert decided == [JobState.COMPLETED]
    assert sched.job_state is JobState.CANCELLED
    assert job_steps(sched) == [("idle", "running"), ("running", "cancelled")]
    assert failed_node(sched) is None
    assert failure_reason(sched) is None
    assert job_exception(sched) is None
    assert invalid_value(sched) is None
    assert sched.states == [COMPLETED]


def test_a_decide_end_returning_cancelled_turns_a_failing_job_into_cancelled() -> None:
    sched = scheduler(independent("a", "b"), decide_end=lambda _state: JobState.CANCELLED)
    sched.start()
    fail(sched, "a", ValueError("a broke"))
    assert sched.job_state is JobState.CANCELLED
    assert failed_node(sched) is None
    assert failure_reason(sched) is None
    assert job_exception(sched) is None
    assert sched.states == [FAILED, CANCELLED]


def test_decide_end_sees_the_state_of_an_outside_end() -> None:
    decided: list[JobState] = []

    def decide_end(state: JobState) -> JobState:
        decided.append(state)
        return state

    sched = scheduler(independent("a"), decide_end=decide_end)
    sched.start()
    sched.end(JobState.TIMED_OUT)
    assert decided == [JobState.TIMED_OUT]
    assert sched.job_state is JobState.TIMED_OUT


# -- ctx -----------------------------------------------------------------------


def test_ctx_holds_the_initial_ctx_and_every_completed_output() -> None:
    sched = scheduler(chain("a", "b"), ctx={"seed": 1})
    sched.start()
    assert sched.final_ctx() == {"seed": 1}
    complete(sched, "a", {"a": 1})
    assert sched.final_ctx() == {"seed": 1, "a": 1}
    complete(sched, "b", {"b": 2, "seed": 3})
    assert sched.final_ctx() == {"seed": 3, "a": 1, "b": 2}


def test_the_final_ctx_is_a_new_dict_unchanged_by_later_completions() -> None:
    sched = scheduler(chain("a", "b"), ctx={"seed": 1})
    sched.start()
    snapshot = sched.final_ctx()
    complete(sched, "a", {"a": 1, "seed": 2})
    second = sched.final_ctx()
    complete(sched, "b", {"b": 2})
    assert snapshot == {"seed": 1}
    assert second == {"seed": 2, "a": 1}
    assert sched.outputs == [{"a": 1, "seed": 2}, {"b": 2}]


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
    assert sched.final_ctx() == final


def test_an_empty_output_merges_nothing() -> None:
    sched = scheduler(independent("a"), ctx={"seed": 0})
    sched.start()
    complete(sched, "a", {})
    assert sched.final_ctx() == {"seed": 0}


def test_ctx_accepts_mappings_that_are_not_dicts() -> None:
    # The core's API takes any Mapping, both as the initial ctx and as a
    # result; a mappingproxy must merge its items, not be read as pairs.
    sched = scheduler(chain("a", "b"), ctx=types.MappingProxyType({"xy": 0}))
    sched.start()
    complete(sched, "a", types.MappingProxyType({"ab": 1}))
    complete(sched, "b", immutables.Map({"cd": 2}))
    assert sched.final_ctx() == {"xy": 0, "ab": 1, "cd": 2}
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
    recorded = {(t.old, t.new) for t in sched.take_transitions()}
    assert recorded == {
        (RUNNING, EXCEPTION),
        (RUNNING, TIMED_OUT),
        (RUNNING, INVALID_RESULT),
    }
    assert job_steps(sched) == [("idle", "running"), ("running", "failed")]

    sched = scheduler(independent("a", "b"), record=False, max_concurrency=1)
    sched.start()
    time_out(sched, "a")
    assert [(t.old, t.new) for t in sched.take_transitions()] == [
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
