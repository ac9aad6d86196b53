"""Retry and failure policies: backoff, which errors, keep going, clean up, scarce resources."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from helpers import WAIT

import daguerreo_actors as d
from daguerreo_actors import JobState, RetryPolicy, Task, TaskEvent, TaskState
from daguerreo_actors.testing import VirtualClock

Fn = Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]


def noop(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {}


def raises(exc: BaseException) -> Fn:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        raise exc

    return fn


def writes(key: str) -> Fn:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        return {key: True}

    return fn


class Recorder:
    def __init__(self) -> None:
        self.events: list[d.Event] = []

    def __call__(self, event: d.Event) -> None:
        self.events.append(event)

    def of(self, task: str) -> list[TaskEvent]:
        return [e for e in self.events if isinstance(e, TaskEvent) and e.task == task]


def recorded(tasks: list[Task], **options: Any) -> tuple[d.JobResult, Recorder]:
    recorder = Recorder()
    job = d.run(tasks, listeners=[recorder], **options)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result, recorder


#: What the virtual clock's time() reads at 0 (event timestamps on it).
EPOCH = 1_700_000_000.0


def on_clock(event: d.Event) -> float:
    """The event's time on a virtual clock, in seconds from its start."""
    return round(event.timestamp - EPOCH, 6)


def clocked(
    clock: VirtualClock, seconds: float, tasks: list[Task], **options: Any
) -> tuple[d.JobResult, Recorder]:
    """Run ``tasks`` on ``clock``, advance it ``seconds``: the job must be done by then."""
    recorder = Recorder()
    job = d.run(tasks, listeners=[recorder], clock=clock, **options)
    clock.advance(seconds)
    assert job.done()
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result, recorder


# -- the retry policy -------------------------------------------------------------


def fails_three_times(
    starts: list[float], now: Callable[[], float]
) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    """A task that notes when each attempt starts and succeeds on the fourth."""

    def flaky(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        starts.append(now())
        if len(starts) < 4:
            raise ConnectionError("not yet")
        return {}

    return flaky


def test_retry_delays_on_the_real_clock_are_within_fifty_milliseconds_of_the_policy() -> None:
    # The real timers (the supervisor's), not the logic: that is tested
    # exactly on the virtual clock below.
    starts: list[float] = []
    flaky = fails_three_times(starts, time.monotonic)
    policy = RetryPolicy(max_retries=3, delay=0.1, backoff=2.0, max_delay=0.3)
    result, recorder = recorded([Task("a", flaky, retry=policy)])
    assert result.ok
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for gap, expected in zip(gaps, [0.1, 0.2, 0.3], strict=True):  # the third is capped
        assert expected <= gap <= expected + 0.05, gaps
    into_exception = [e for e in recorder.of("a") if e.new_state is TaskState.EXCEPTION]
    assert [e.retry_in for e in into_exception] == pytest.approx([0.1, 0.2, 0.3])


def test_retry_delays_follow_the_policy_exactly(clock: VirtualClock) -> None:
    # On the virtual clock: exactly, not within 50 ms.
    starts: list[float] = []
    flaky = fails_three_times(starts, clock.now)
    policy = RetryPolicy(max_retries=3, delay=1, backoff=2.0, max_delay=3)
    result, recorder = clocked(clock, 6, [Task("a", flaky, retry=policy)])
    assert result.ok
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == [1.0, 2.0, 3.0]  # the third is capped
    assert starts == [0.0, 1.0, 3.0, 6.0]
    into_exception = [e for e in recorder.of("a") if e.new_state is TaskState.EXCEPTION]
    assert [e.retry_in for e in into_exception] == [1.0, 2.0, 3.0]
    assert [on_clock(e) for e in into_exception] == [0.0, 1.0, 3.0]


def test_jitter_is_reproducible_for_a_seed_and_stays_within_its_bounds() -> None:
    policy = RetryPolicy(max_retries=4, delay=1, jitter=0.5)

    def delays(seed: int) -> list[float]:
        clock = VirtualClock()
        starts: list[float] = []

        def fails(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
            starts.append(clock.now())
            raise ValueError()

        # Four delays of at most 1.5 s each: done by 6 s.
        result, recorder = clocked(clock, 6, [Task("a", fails, retry=policy)], seed=seed)
        assert result.state is JobState.FAILED
        retry_in = [
            e.retry_in
            for e in recorder.of("a")
            if e.new_state is TaskState.EXCEPTION and e.retry_in is not None
        ]
        # Each retry started exactly its jittered delay after the failure before it.
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert gaps == pytest.approx(retry_in, abs=1e-9)
        return retry_in

    first, again, other = delays(7), delays(7), delays(8)
    assert first == again
    assert first != other
    assert len(first) == 4
    assert all(0.5 <= delay <= 1.5 for delay in first)


def test_a_task_waiting_for_its_retry_holds_no_slot(clock: VirtualClock) -> None:
    order: list[str] = []
    times: list[float] = []

    def flaky(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        order.append("flaky")
        times.append(clock.now())
        if order.count("flaky") == 1:
            raise ValueError("first")
        return {}

    def other(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        order.append("other")
        times.append(clock.now())
        clock.sleep(4)  # done at 4 s, well within flaky's delay
        return {}

    tasks = [Task("flaky", flaky, retry=RetryPolicy(delay=10)), Task("other", other)]
    result, recorder = clocked(clock, 10, tasks, max_concurrency=1)
    assert result.ok
    assert order == ["flaky", "other", "flaky"]  # other ran during flaky's delay
    assert times == [0.0, 0.0, 10.0]
    states = [(e.old_state, e.new_state) for e in recorder.of("flaky")]
    assert (TaskState.EXCEPTION, TaskState.READY) in states
    [other_done] = [e for e in recorder.of("other") if e.new_state is TaskState.COMPLETED]
    assert on_clock(other_done) == 4.0


def test_an_exception_the_policy_does_not_retry_makes_exactly_one_attempt() -> None:
    calls: list[int] = []

    def buggy(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        raise KeyError("a bug, not a glitch")

    for retry_on in [(ConnectionError, TimeoutError), lambda exc: isinstance(exc, OSError)]:
        calls.clear()
        result, recorder = recorded([Task("a", buggy, retry=RetryPolicy(retry_on=retry_on))])
        assert result.state is JobState.FAILED
        assert calls == [1]
        assert result.attempts["a"] == 1
        [into] = [e for e in recorder.of("a") if e.new_state is TaskState.EXCEPTION]
        assert into.retry_in is None


def test_retry_on_that_raises_does_not_retry_and_is_logged(logs: list[dict[str, Any]]) -> None:
    def judge(_exc: BaseException) -> bool:
        raise RuntimeError("judge broke")

    job = d.run([Task("a", raises(ValueError("x")), retry=RetryPolicy(retry_on=judge))])
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.attempts["a"] == 1
    assert isinstance(result.exception, ValueError)
    assert any(e["event"] == "retry_on_failed" for e in logs)


def test_retry_timeouts_false_makes_a_timeout_final(clock: VirtualClock) -> None:

    def stuck(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        clock.sleep(100)
        return {}

    policy = RetryPolicy(max_retries=3, retry_timeouts=False)
    job = d.run([Task("a", stuck, timeout=5, retry=policy)], clock=clock)
    clock.advance(5)
    assert job.done()  # failed at its deadline, not when the code returns
    result = job.get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.TIMED_OUT
    assert result.attempts["a"] == 1
    clock.advance(95)  # the abandoned attempt's code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_the_number_of_retries_comes_from_the_nearest_place_that_says() -> None:
    failing = raises(ValueError())
    tasks = [
        Task("own", failing, max_retries=0),
        Task("policy", failing, retry=RetryPolicy(max_retries=1)),
        Task("job", failing),
    ]
    for options, job_retries in [({"max_retries": 2}, 2), ({"retry": RetryPolicy(3)}, 3), ({}, 5)]:
        result = d.run(tasks, on_failure="continue", **options).get(timeout=WAIT)
        assert dict(result.attempts) == {"own": 1, "policy": 2, "job": job_retries + 1}


def test_a_job_that_ends_while_a_retry_waits_cancels_that_task(clock: VirtualClock) -> None:
    recorder = Recorder()
    job = d.run(
        [Task("a", raises(ValueError()), retry=RetryPolicy(delay=30))],
        timeout=20,
        clock=clock,
        listeners=[recorder],
    )
    clock.advance(19.999)
    assert not job.done()  # its retry is due at 30 s; the job's deadline at 20 s
    clock.advance(0.001)
    assert job.done()
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.TIMED_OUT
    assert [(e.old_state, e.new_state) for e in recorder.of("a")][-1] == (
        TaskState.EXCEPTION,
        TaskState.CANCELLED,
    )
    assert [(on_clock(e), e.new_state, e.retry_in) for e in recorder.of("a")][1:] == [
        (0.0, TaskState.RUNNING, None),
        (0.0, TaskState.EXCEPTION, 30.0),
        (20.0, TaskState.CANCELLED, None),
    ]


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"delay": -1}, ValueError, "delay"),
        ({"delay": "soon"}, TypeError, "delay"),
        ({"backoff": 0.5}, ValueError, "backoff"),
        ({"max_delay": 0}, ValueError, "max_delay"),
        ({"jitter": 1.5}, ValueError, "jitter"),
        ({"jitter": float("nan")}, ValueError, "jitter"),
        ({"retry_on": (ValueError, "TypeError")}, TypeError, "retry_on"),
        ({"retry_timeouts": "yes"}, TypeError, "retry_timeouts"),
    ],
)
def test_every_policy_field_is_checked_by_name(
    fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RetryPolicy(**fields)


def test_max_retries_and_retry_given_together_are_an_error_naming_both() -> None:
    with pytest.raises(d.InvalidTasksError, match="'max_retries' and 'retry'"):
        Task("a", noop, max_retries=1, retry=RetryPolicy())
    with pytest.raises(ValueError, match="max_retries and retry"):
        d.run([Task("a", noop)], max_retries=1, retry=RetryPolicy())


# -- run_if and on_failure ----------------------------------------------------------


def diamond_with_a_failure(extra: list[Task] | None = None) -> list[Task]:
    """root -> bad -> after -> later; root -> good -> good2; plus ``extra``."""
    return [
        Task("root", noop),
        Task("bad", raises(ValueError("bad")), ["root"], max_retries=0),
        Task("after", noop, ["bad"]),
        Task("later", noop, ["after"]),
        Task("good", writes("good"), ["root"]),
        Task("good2", writes("good2"), ["good"]),
        *(extra or []),
    ]


def test_on_failure_continue_runs_every_independent_branch_and_marks_exactly_the_dependents() -> (
    None
):
    result = d.run(diamond_with_a_failure(), on_failure="continue").get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failed_task == "bad"
    states = dict(result.task_states)
    assert states == {
        "root": TaskState.COMPLETED,
        "bad": TaskState.FAILED,
        "after": TaskState.UPSTREAM_FAILED,
        "later": TaskState.UPSTREAM_FAILED,
        "good": TaskState.COMPLETED,
        "good2": TaskState.COMPLETED,
    }
    assert result.ctx == {"good": True, "good2": True}
    assert [f.task for f in result.failures] == ["bad"]


def test_on_failure_stop_marks_the_failures_dependents_and_skips_the_rest() -> None:
    gate = threading.Event()

    def slow(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        gate.wait(WAIT)
        return {}

    tasks = [
        Task("bad", raises(ValueError()), max_retries=0),
        Task("after", noop, ["bad"]),
        Task("slow", slow),
        Task("behind", noop, ["slow"]),
    ]
    try:
        result = d.run(tasks, max_concurrency=2).get(timeout=WAIT)
    finally:
        gate.set()
    assert dict(result.task_states) == {
        "bad": TaskState.FAILED,
        "after": TaskState.UPSTREAM_FAILED,
        "slow": TaskState.CANCELLED,
        "behind": TaskState.SKIPPED,
    }


@pytest.mark.parametrize("on_failure", ["stop", "continue"])
def test_an_all_done_cleanup_runs_after_a_failure_and_sees_what_completed(
    on_failure: str,
) -> None:
    seen: dict[str, Any] = {}

    def cleanup(ctx: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        seen.update(ctx)
        return {"cleaned": True}

    extra = [Task("cleanup", cleanup, ["later", "good2"], run_if="all_done")]
    result = d.run(diamond_with_a_failure(extra), on_failure=on_failure).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.task_states["cleanup"] is TaskState.COMPLETED
    assert result.ctx["cleaned"] is True
    if on_failure == "continue":
        assert seen == {"good": True, "good2": True}


def test_an_all_done_cleanup_runs_after_success_too() -> None:
    tasks = [Task("a", writes("a")), Task("cleanup", writes("cleaned"), ["a"], run_if="all_done")]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.ok
    assert result.ctx == {"a": True, "cleaned": True}


def test_any_failed_runs_only_when_a_dependency_failed() -> None:
    alert = [Task("alert", writes("alerted"), ["bad", "good"], run_if="any_failed")]
    failing = d.run(diamond_with_a_failure(alert), on_failure="continue").get(timeout=WAIT)
    assert failing.task_states["alert"] is TaskState.COMPLETED
    fine = [Task("bad", noop), Task("good", noop), *alert]
    result = d.run(fine).get(timeout=WAIT)
    assert result.ok
    assert result.task_states["alert"] is TaskState.SKIPPED


def test_any_failed_counts_an_upstream_failure_as_a_failure() -> None:
    tasks = [
        Task("bad", raises(ValueError()), max_retries=0),
        Task("middle", noop, ["bad"]),
        Task("alert", writes("alerted"), ["middle"], run_if="any_failed"),
    ]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.task_states["middle"] is TaskState.UPSTREAM_FAILED
    assert result.task_states["alert"] is TaskState.COMPLETED


def test_after_the_stop_only_cleanup_tasks_start() -> None:
    tasks = [
        Task("bad", raises(ValueError()), max_retries=0),
        Task("cleanup", noop, ["bad"], run_if="all_done"),
        Task("after_cleanup", noop, ["cleanup"]),
        Task("cleanup_of_cleanup", noop, ["cleanup"], run_if="all_done"),
    ]
    result = d.run(tasks).get(timeout=WAIT)
    assert dict(result.task_states) == {
        "bad": TaskState.FAILED,
        "cleanup": TaskState.COMPLETED,
        "after_cleanup": TaskState.SKIPPED,
        "cleanup_of_cleanup": TaskState.COMPLETED,
    }


def test_cancel_starts_no_cleanup_task() -> None:
    gate = threading.Event()

    def waits(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        gate.wait(WAIT)
        return {}

    job = d.run([Task("a", waits), Task("cleanup", noop, ["a"], run_if="all_done")])
    try:
        time.sleep(0.02)
        assert job.cancel()
        result = job.get(timeout=WAIT)
    finally:
        gate.set()
    assert result.task_states["cleanup"] is TaskState.SKIPPED


def test_a_continue_on_failure_task_fails_its_dependents_but_not_the_job() -> None:
    tasks = [
        Task("optional", raises(ValueError("meh")), max_retries=0, continue_on_failure=True),
        Task("needs_it", noop, ["optional"]),
        Task("report", writes("reported"), ["optional"], run_if="all_done"),
        Task("other", writes("other")),
    ]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.task_states["needs_it"] is TaskState.UPSTREAM_FAILED
    assert result.ctx == {"reported": True, "other": True}
    assert [f.task for f in result.failures] == ["optional"]
    assert result.failed_task is None


def test_an_invalid_result_fails_the_job_even_with_continue_on_failure() -> None:
    tasks = [Task("bad", lambda _c, _i: None, continue_on_failure=True), Task("ok", noop)]  # type: ignore[arg-type, return-value]
    result = d.run(tasks, on_failure="continue").get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert result.task_states["ok"] is TaskState.COMPLETED


@pytest.mark.parametrize(
    ("task", "match"),
    [
        ({"name": "a", "fn": noop, "run_if": "whenever"}, "field 'run_if'"),
        ({"name": "a", "fn": noop, "run_if": "any_failed"}, "no dependencies"),
    ],
)
def test_a_bad_run_if_is_an_invalid_field(task: dict[str, Any], match: str) -> None:
    with pytest.raises(d.InvalidTasksError, match=match) as caught:
        d.validate_tasks([task])
    assert caught.value.errors[0].code == "invalid-field"


def test_a_bad_on_failure_is_an_option_error() -> None:
    with pytest.raises(ValueError, match="on_failure"):
        d.run([Task("a", noop)], on_failure="panic")


# -- resources and priority -----------------------------------------------------------


def test_a_resource_of_capacity_one_never_has_two_holders_in_a_thousand_random_jobs() -> None:
    holders = 0
    most = 0
    lock = threading.Lock()

    def uses_db(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        nonlocal holders, most
        with lock:
            holders += 1
            most = max(most, holders)
        time.sleep(0)
        with lock:
            holders -= 1
        return {}

    rnd = random.Random(13)
    for _ in range(1000):
        n = rnd.randint(2, 6)
        tasks = [
            Task(
                f"t{i}",
                uses_db if rnd.random() < 0.7 else noop,
                [f"t{j}" for j in range(i) if rnd.random() < 0.2],
                resources={"db": 1} if rnd.random() < 0.7 else None,
                priority=rnd.randint(0, 2),
            )
            for i in range(n)
        ]
        # Tasks that use the db without declaring it are no test of ours.
        tasks = [
            Task(
                t.name,
                noop if not t.resources else uses_db,
                t.dependencies,
                priority=t.priority,
                resources=t.resources,
            )
            for t in tasks
        ]
        result = d.run(tasks, max_concurrency=4, resources={"db": 1}).get(timeout=WAIT)
        assert result.ok
    assert most == 1


def test_a_task_waiting_for_a_resource_does_not_block_the_ones_behind_it() -> None:
    gate = threading.Event()
    order: list[str] = []

    def holds(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        order.append("holder")
        gate.wait(WAIT)
        return {}

    def quick(name: str) -> Fn:
        def fn(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
            order.append(name)
            if name == "free":
                gate.set()
            return {}

        return fn

    tasks = [
        Task("holder", holds, resources={"db": 1}),
        Task("waits", quick("waits"), resources={"db": 1}),
        Task("free", quick("free")),
    ]
    result = d.run(tasks, max_concurrency=3, resources={"db": 1}).get(timeout=WAIT)
    assert result.ok
    assert order.index("free") < order.index("waits")


def test_higher_priority_tasks_start_first() -> None:
    order: list[str] = []

    def named(name: str) -> Fn:
        def fn(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
            order.append(name)
            return {}

        return fn

    tasks = [
        Task("low", named("low"), priority=0),
        Task("high", named("high"), priority=5),
        Task("mid", named("mid"), priority=2),
        Task("mid2", named("mid2"), priority=2),
    ]
    assert d.run(tasks, max_concurrency=1).get(timeout=WAIT).ok
    assert order == ["high", "mid", "mid2", "low"]


def test_resources_a_job_does_not_define_or_cannot_hold_are_reported_with_the_other_errors() -> (
    None
):
    tasks = [
        Task("a", noop, resources={"gpu": 1}),
        Task("b", noop, resources={"db": 3}),
        {"name": "c", "fn": noop, "dependecies": []},
    ]
    with pytest.raises(d.InvalidTasksError) as caught:
        d.run(tasks, resources={"db": 2})
    messages = [str(e) for e in caught.value.errors]
    assert len(messages) == 3
    assert any("'gpu'" in m and "does not define" in m for m in messages)
    assert any("needs 3 of 'db'" in m and "capacity of 2" in m for m in messages)


@pytest.mark.parametrize(
    ("resources", "error"), [({"db": 0}, ValueError), ({"db": "two"}, TypeError), ([1], TypeError)]
)
def test_bad_job_resources_are_an_option_error(resources: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="resources"):
        d.run([Task("a", noop)], resources=resources)
