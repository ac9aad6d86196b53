"""The scheduler core (``_scheduler.Scheduler``): ordering and concurrency.

No threads, no actors: every test builds a graph, feeds the core the calls
the JobActor would make, and checks the transitions it records and the
state it keeps. The helpers that drive it are in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import (
    complete,
    fail,
    graph_of,
    independent,
    names,
    scheduler,
    state_of,
    steps,
    time_out,
)

from daguerreo_actors._scheduler import Scheduler
from daguerreo_actors._states import JobState

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
