"""The engine end to end: the ports of Daguerreo's own suite, then the rest of the contract."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import immutables
import pykka
import pytest
import structlog
from helpers import WAIT

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobState, Task, TaskEvent, TaskState
from daguerreo_actors.testing import VirtualClock

#: What the virtual clock's time() reads at 0 (event timestamps on it).
EPOCH = 1_700_000_000.0


def on_clock(event: d.Event) -> float:
    """The event's time on a virtual clock, in seconds from its start."""
    return round(event.timestamp - EPOCH, 6)


def eventually(predicate: Callable[[], bool]) -> bool:
    """True once ``predicate()`` is, within WAIT real seconds.

    For the code of an abandoned attempt on a virtual clock: ``advance``
    waits for the job's current attempts only, not for that code.
    """
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def incer(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {"v": ctx["v"] + 1}


THE_EXCEPTION = RuntimeError("BOOM")


def thrower(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    raise THE_EXCEPTION


class Recorder:
    """A listener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[d.Event] = []

    def __call__(self, event: d.Event) -> None:
        self.events.append(event)

    def task_events(self, name: str | None = None) -> list[TaskEvent]:
        return [
            e for e in self.events if isinstance(e, TaskEvent) and (name is None or e.task == name)
        ]

    def transitions(self, name: str) -> list[tuple[TaskState, TaskState, int]]:
        return [(e.old_state, e.new_state, e.attempt) for e in self.task_events(name)]


def run_and_record(tasks: list[Any], **options: Any) -> tuple[d.JobResult, Recorder]:
    recorder = Recorder()
    job = d.run(tasks, listeners=[recorder], **options)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result, recorder


# -- ports of Daguerreo's core_test.clj ---------------------------------------


def test_ctx_flows_through_a_chain_of_dependencies() -> None:
    tasks = [
        {"name": "a", "fn": incer, "dependencies": ["b"]},
        {"name": "b", "fn": incer, "dependencies": ["c"]},
        {"name": "c", "fn": incer},
    ]
    result = d.run(tasks, ctx={"v": 0}).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.ok
    assert result.ctx == {"v": 3}


def test_an_exception_fails_the_job_with_that_very_exception() -> None:
    tasks = [{"name": "a", "fn": incer}, {"name": "b", "fn": thrower}]
    result = d.run(tasks, ctx={"v": 0}, max_retries=0).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.EXCEPTION
    assert result.failed_task == "b"
    assert result.exception is THE_EXCEPTION
    assert result.task_states["b"] is TaskState.FAILED
    assert not result.ok


def test_a_failing_task_runs_max_retries_plus_one_times() -> None:
    runs = []

    def counted(ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        runs.append(1)
        return thrower(ctx, is_active)

    tasks = [{"name": "a", "fn": counted}, {"name": "b", "fn": incer}]
    result = d.run(tasks, ctx={"v": 0}, max_retries=3).get(timeout=WAIT)
    assert len(runs) == 4
    assert result.attempts["a"] == 4
    assert result.state is JobState.FAILED
    assert result.failed_task == "a"
    assert result.failure_reason is TaskState.EXCEPTION
    assert result.exception is THE_EXCEPTION
    assert result.ctx["v"] == 1


def test_max_concurrency_one_runs_ready_tasks_one_after_another() -> None:
    tasks = [{"name": n, "fn": incer} for n in "abc"]
    result, recorder = run_and_record(tasks, ctx={"v": 0}, max_concurrency=1)
    assert result.ctx == {"v": 3}
    assert [(e.task, e.new_state) for e in recorder.task_events()] == [
        ("a", TaskState.READY),
        ("b", TaskState.READY),
        ("c", TaskState.READY),
        ("a", TaskState.RUNNING),
        ("a", TaskState.COMPLETED),
        ("b", TaskState.RUNNING),
        ("b", TaskState.COMPLETED),
        ("c", TaskState.RUNNING),
        ("c", TaskState.COMPLETED),
    ]


def test_cancel_stops_a_looping_task_through_is_active() -> None:
    looped = threading.Event()
    stopped = threading.Event()

    def looper(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        while is_active():
            looped.set()
            time.sleep(0.005)
        stopped.set()
        return {"never": "merged"}

    b_done = threading.Event()

    def b(ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        return incer(ctx, is_active)

    tasks = [{"name": "a", "fn": looper}, {"name": "b", "fn": b}]
    job = d.run(
        tasks,
        ctx={"v": 0},
        max_concurrency=2,
        listeners=[
            lambda e: (
                b_done.set()
                if getattr(e, "task", "") == "b" and e.new_state is TaskState.COMPLETED
                else None
            )
        ],
    )
    assert looped.wait(WAIT)
    assert b_done.wait(WAIT)
    assert job.cancel() is True
    assert stopped.wait(WAIT)
    result = job.get(timeout=WAIT)
    assert result.state is JobState.CANCELLED
    assert result.ctx == {"v": 1}
    assert result.task_states["a"] is TaskState.CANCELLED
    assert result.failed_task is None
    assert result.exception is None


def test_a_non_mapping_result_fails_the_job_without_retry() -> None:
    calls = []

    def bad(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> Any:
        calls.append(1)
        return "not-a-map"

    result = d.run([{"name": "a", "fn": bad}], max_retries=3).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert result.failed_task == "a"
    assert result.invalid_result == "not-a-map"
    assert result.exception is None
    assert result.task_states["a"] is TaskState.INVALID_RESULT
    assert len(calls) == 1


def test_a_task_that_outlives_its_timeout_fails_after_its_retries(clock: VirtualClock) -> None:

    def slow(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        clock.sleep(100)  # ignores is_active(): outlives every deadline
        return {"a": 1}

    tasks = [{"name": "a", "fn": slow, "timeout": 5, "overlap": True}]  # retries beside it
    recorder = Recorder()
    job = d.run(tasks, max_retries=3, clock=clock, listeners=[recorder])
    clock.advance(19.999)
    assert not job.done()
    clock.advance(0.001)
    assert job.done()  # the fourth deadline, at 20 s, failed it
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.TIMED_OUT
    assert result.failed_task == "a"
    assert result.exception is None
    assert result.attempts["a"] == 4
    assert "a" not in result.ctx
    outcomes = [new for _, new, _ in recorder.transitions("a")]
    assert outcomes.count(TaskState.TIMED_OUT) == 4
    # Each attempt times out 5 s after it started; each retry starts at once, beside it.
    assert [
        (on_clock(e), e.new_state, e.attempt)
        for e in recorder.task_events("a")
        if e.new_state in (TaskState.RUNNING, TaskState.TIMED_OUT, TaskState.FAILED)
    ] == [
        (0.0, TaskState.RUNNING, 1),
        (5.0, TaskState.TIMED_OUT, 1),
        (5.0, TaskState.RUNNING, 2),
        (10.0, TaskState.TIMED_OUT, 2),
        (10.0, TaskState.RUNNING, 3),
        (15.0, TaskState.TIMED_OUT, 3),
        (15.0, TaskState.RUNNING, 4),
        (20.0, TaskState.TIMED_OUT, 4),
        (20.0, TaskState.FAILED, 4),
    ]
    clock.advance(100)  # the abandoned attempts' code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_tasks_run_on_a_custom_executor() -> None:
    seen: list[str] = []

    def where(name: str) -> Callable[..., dict[str, Any]]:
        def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
            seen.append(threading.current_thread().name)
            return {name: len(name)}

        return fn

    with ThreadPoolExecutor(1, thread_name_prefix="custom") as executor:
        tasks = [{"name": "a", "fn": where("a")}, {"name": "bb", "fn": where("bb")}]
        result = d.run(tasks, ctx={"v": 0}, executor=executor).get(timeout=WAIT)
    assert result.ctx == {"v": 0, "a": 1, "bb": 2}
    assert len(seen) == 2
    assert all(name.startswith("custom") for name in seen)


def test_the_job_timeout_ends_the_job_with_what_completed(clock: VirtualClock) -> None:

    def slow(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        clock.sleep(100)
        return {"b": 1}

    tasks = [
        {"name": "a", "fn": lambda _c, _i: {"a": 1}},
        {"name": "b", "fn": slow, "dependencies": ["a"]},
        {"name": "c", "fn": lambda _c, _i: {"c": 1}, "dependencies": ["b"]},
    ]
    recorder = Recorder()
    job = d.run(tasks, timeout=30, clock=clock, listeners=[recorder])
    clock.advance(29.999)
    assert not job.done()  # not a moment before its deadline...
    clock.advance(0.001)
    assert job.done()  # ...and at it, though b still runs
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.TIMED_OUT
    assert result.ctx == {"a": 1}
    assert result.task_states == {
        "a": TaskState.COMPLETED,
        "b": TaskState.CANCELLED,
        "c": TaskState.SKIPPED,
    }
    last = recorder.events[-1]
    assert isinstance(last, JobEvent)
    assert (on_clock(last), last.new_state) == (30.0, JobState.TIMED_OUT)
    assert [(on_clock(e), e.new_state) for e in recorder.task_events("b")][-1] == (
        30.0,
        TaskState.CANCELLED,
    )
    assert result.failed_task is None
    clock.advance(70)  # b's code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_run_rejects_invalid_tasks_with_every_error() -> None:
    tasks = [
        {"name": "a", "fn": incer, "dependencies": ["b"]},
        {"name": "b", "fn": incer, "dependencies": ["a"]},
        {"name": "c", "fn": incer, "dependencies": ["zzz"]},
    ]
    with pytest.raises(d.InvalidTasksError) as info:
        d.run(tasks)
    codes = sorted(e.code for e in info.value.errors)
    assert codes == ["dependency-cycle", "missing-dependencies"]
    assert str(info.value).startswith("2 errors in tasks:")
    assert "a -> b -> a" in str(info.value)


# -- ctx -----------------------------------------------------------------------


def test_ctx_is_read_only_and_a_snapshot() -> None:
    seen: dict[str, Any] = {}
    gate = threading.Event()

    def first(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        seen["ctx"] = ctx
        try:
            ctx["x"] = 1  # type: ignore[index]
        except TypeError as exc:
            seen["error"] = exc
        gate.wait(WAIT)
        return {"first": 1}

    def second(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        gate.set()
        return {"second": 2}

    tasks = [
        {"name": "first", "fn": first},
        {"name": "second", "fn": second},
        {
            "name": "last",
            "fn": lambda ctx, _i: {"saw": sorted(ctx)},
            "dependencies": {"first", "second"},
        },
    ]
    result = d.run(tasks, ctx={"init": 0}, max_concurrency=2).get(timeout=WAIT)
    assert result.ok
    assert isinstance(seen["error"], TypeError)
    assert dict(seen["ctx"]) == {"init": 0}  # later merges did not change it
    assert result.ctx["saw"] == ["first", "init", "second"]


def test_ctx_holds_transitive_dependencies_outputs() -> None:
    tasks = [
        {"name": "a", "fn": lambda _c, _i: {"a": 1}},
        {"name": "b", "fn": lambda c, _i: {"b": c["a"] + 1}, "dependencies": ["a"]},
        {"name": "c", "fn": lambda c, _i: {"c": c["a"] + c["b"]}, "dependencies": ["b"]},
    ]
    assert d.run(tasks).get(timeout=WAIT).ctx == {"a": 1, "b": 2, "c": 3}


def test_result_ctx_is_merged_in_completion_order() -> None:
    b_may_finish = threading.Event()

    def a(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        b_may_finish.set()
        return {"k": "a", "a": 1}

    def b(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        # b finishes after a, so its "k" wins and its keys come later.
        b_may_finish.wait(WAIT)
        time.sleep(0.02)
        return {"k": "b", "b": 1}

    result = d.run([Task("b", b), Task("a", a)], ctx={"z": 0}, max_concurrency=2).get(timeout=WAIT)
    assert list(result.ctx) == ["z", "k", "a", "b"]
    assert result.ctx["k"] == "b"


def test_a_returned_mapping_is_copied_when_the_task_returns() -> None:
    kept: dict[str, Any] = {}

    def leaky(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        kept["out"] = {"x": 1}
        return kept["out"]

    result = d.run([Task("a", leaky)]).get(timeout=WAIT)
    kept["out"]["x"] = 2
    assert result.ctx == {"x": 1}


def test_ctx_passed_to_tasks_is_a_persistent_map() -> None:
    seen = []
    d.run([Task("a", lambda c, _i: seen.append(c) or {})]).get(timeout=WAIT)
    assert isinstance(seen[0], immutables.Map)


def test_an_empty_task_list_completes_at_once_with_the_initial_ctx() -> None:
    result, recorder = run_and_record([], ctx={"x": 1})
    assert result.state is JobState.COMPLETED
    assert result.ctx == {"x": 1}
    assert result.task_states == {}
    assert [(e.old_state, e.new_state) for e in recorder.events] == [
        (JobState.IDLE, JobState.RUNNING),
        (JobState.RUNNING, JobState.COMPLETED),
    ]


def test_the_initial_ctx_is_copied_at_run() -> None:
    gate = threading.Event()
    initial = {"x": 1}

    def waits(ctx: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        gate.wait(WAIT)
        return {"saw": ctx["x"]}

    job = d.run([Task("a", waits)], ctx=initial)
    initial["x"] = 2
    gate.set()
    assert job.get(timeout=WAIT).ctx == {"x": 1, "saw": 1}


# -- retries, events and attempts ----------------------------------------------


def test_retry_events_carry_the_attempt_numbers() -> None:
    calls = []

    def flaky(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first time")
        return {"ok": True}

    result, recorder = run_and_record([Task("a", flaky)])
    assert result.ok
    assert recorder.transitions("a") == [
        (TaskState.UNSCHEDULED, TaskState.READY, 0),
        (TaskState.READY, TaskState.RUNNING, 1),
        (TaskState.RUNNING, TaskState.EXCEPTION, 1),
        (TaskState.EXCEPTION, TaskState.READY, 1),
        (TaskState.READY, TaskState.RUNNING, 2),
        (TaskState.RUNNING, TaskState.COMPLETED, 2),
    ]
    exception_event = recorder.task_events("a")[2]
    assert isinstance(exception_event.exception, ValueError)
    completed = recorder.task_events("a")[-1]
    assert completed.result == {"ok": True}


def test_a_task_max_retries_overrides_the_jobs() -> None:
    calls = []

    def fails(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        raise ValueError("no")

    result = d.run([Task("a", fails, max_retries=1)], max_retries=5).get(timeout=WAIT)
    assert len(calls) == 2
    assert result.attempts == {"a": 2}


def test_a_timed_out_attempt_is_retried_and_its_late_result_is_never_merged(
    clock: VirtualClock,
) -> None:
    first_returned = threading.Event()
    calls = []

    def sometimes_slow(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            clock.sleep(12)  # times out at 10 s, returns at 12 s while the retry runs
            first_returned.set()
            return {"who": "late first attempt", "late": True}
        clock.sleep(5)  # started at 10 s, returns at 15 s, before its deadline
        return {"who": "retry"}

    # overlap: the retry runs while the first attempt still does.
    tasks = [Task("a", sometimes_slow, timeout=10, overlap=True), Task("b", incer, ["a"])]
    recorder = Recorder()
    job = d.run(tasks, ctx={"v": 0}, clock=clock, listeners=[recorder])
    clock.advance(10)
    assert [(s.task, s.attempt) for s in job.stragglers()] == [("a", 1)]  # its code runs on
    clock.advance(2)
    assert first_returned.wait(WAIT)
    # Its late result committed (and discarded) while the job still ran.
    assert eventually(lambda: job.stragglers() == ())
    assert not job.done()
    clock.advance(3)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ok
    assert result.ctx == {"v": 1, "who": "retry"}
    assert result.attempts["a"] == 2
    assert (TaskState.RUNNING, TaskState.TIMED_OUT, 1) in recorder.transitions("a")
    assert (TaskState.TIMED_OUT, TaskState.READY, 1) in recorder.transitions("a")
    steps = [(on_clock(e), e.old_state, e.new_state, e.attempt) for e in recorder.task_events("a")]
    assert steps[1:] == [
        (0.0, TaskState.READY, TaskState.RUNNING, 1),
        (10.0, TaskState.RUNNING, TaskState.TIMED_OUT, 1),
        (10.0, TaskState.TIMED_OUT, TaskState.READY, 1),
        (10.0, TaskState.READY, TaskState.RUNNING, 2),
        (15.0, TaskState.RUNNING, TaskState.COMPLETED, 2),
    ]
    assert job.wait_stopped(timeout=WAIT)


def test_is_active_turns_false_for_a_timed_out_attempt(clock: VirtualClock) -> None:
    flags: list[bool] = []
    polls: list[tuple[float, bool]] = []
    done = threading.Event()

    def watcher(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        flags.append(is_active())
        while True:
            active = is_active()
            polls.append((clock.now(), active))
            if not active:
                break
            clock.sleep(3)
        flags.append(is_active())
        done.set()
        return {}

    job = d.run([Task("a", watcher, timeout=10, max_retries=0)], clock=clock)
    clock.advance(10)
    result = job.get(timeout=WAIT)
    assert result.failure_reason is TaskState.TIMED_OUT
    assert not done.is_set()  # the code sleeps on, until 12 s
    assert [(s.task, s.attempt) for s in job.stragglers()] == [("a", 1)]
    clock.advance(2)
    assert done.wait(WAIT)  # abandoned: advance does not wait for its code
    assert flags == [True, False]
    # True before the deadline (10 s), False at the first look after it.
    assert polls == [(0.0, True), (3.0, True), (6.0, True), (9.0, True), (12.0, False)]
    assert job.wait_stopped(timeout=WAIT)


def test_with_overlap_a_slot_freed_by_a_timeout_starts_the_next_waiting_task(
    clock: VirtualClock,
) -> None:

    def stuck(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        clock.sleep(100)
        return {}

    tasks = [
        Task("stuck", stuck, timeout=5, max_retries=0, continue_on_failure=True, overlap=True),
        Task("next", lambda _c, _i: {"next": 1}),
    ]
    recorder = Recorder()
    job = d.run(tasks, max_concurrency=1, clock=clock, listeners=[recorder])
    clock.advance(4.999)
    assert not job.done()  # the one slot is stuck's until its deadline
    clock.advance(0.001)
    assert job.done()  # freed at 5 s, though stuck's code runs on
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.COMPLETED
    assert result.task_states == {"stuck": TaskState.FAILED, "next": TaskState.COMPLETED}
    assert result.ctx == {"next": 1}
    assert [
        (on_clock(e), e.task, e.new_state)
        for e in recorder.task_events()
        if e.new_state is not TaskState.READY
    ] == [
        (0.0, "stuck", TaskState.RUNNING),
        (5.0, "stuck", TaskState.TIMED_OUT),
        (5.0, "stuck", TaskState.FAILED),
        (5.0, "next", TaskState.RUNNING),
        (5.0, "next", TaskState.COMPLETED),
    ]
    clock.advance(95)  # stuck's code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_a_failing_continue_on_failure_task_lets_the_job_complete() -> None:
    tasks = [
        Task("main", lambda _c, _i: {"main": 1}),
        Task("extra", thrower, ["main"], continue_on_failure=True, max_retries=1),
    ]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.task_states == {"main": TaskState.COMPLETED, "extra": TaskState.FAILED}
    assert result.attempts["extra"] == 2
    assert result.failed_task is None
    assert result.exception is None


def test_a_failure_skips_what_did_not_start_and_cancels_what_runs() -> None:
    release = threading.Event()
    running = threading.Event()

    def long(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        running.set()
        release.wait(WAIT)
        return {"long": 1}

    def fail_when_long_runs(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        running.wait(WAIT)
        raise ValueError("boom")

    tasks = [
        Task("long", long),
        Task("bad", fail_when_long_runs, max_retries=0),
        Task("after", incer, ["long"]),
    ]
    try:
        result, recorder = run_and_record(tasks, ctx={"v": 0}, max_concurrency=2)
    finally:
        release.set()
    assert result.state is JobState.FAILED
    assert result.task_states == {
        "long": TaskState.CANCELLED,
        "bad": TaskState.FAILED,
        "after": TaskState.SKIPPED,
    }
    assert isinstance(result.exception, ValueError)
    assert recorder.events[-1] == JobEvent(
        result_job_id(recorder), JobState.RUNNING, JobState.FAILED, recorder.events[-1].timestamp
    )


def result_job_id(recorder: Recorder) -> str:
    return recorder.events[0].job_id


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_task_raising_base_exception_fails_only_that_attempt(
    exc_type: type[BaseException],
) -> None:
    class Bystander(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    bystander = Bystander.start()
    try:
        calls = []

        def raises(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
            calls.append(1)
            if len(calls) == 1:
                raise exc_type("from a task")
            return {"ok": 1}

        result = d.run([Task("a", raises)]).get(timeout=WAIT)
        assert result.ok
        assert result.attempts["a"] == 2
        assert bystander.ask("still here", timeout=WAIT) == "still here"
    finally:
        bystander.stop()


# -- cancel ----------------------------------------------------------------------


def test_cancel_returns_true_once_and_then_false() -> None:
    gate = threading.Event()
    job = d.run([Task("a", lambda _c, is_active: gate.wait(WAIT) and {})])
    try:
        assert job.cancel() is True
        assert job.state is JobState.CANCELLED
        assert job.cancel() is False
        assert d.cancel(job) is False
    finally:
        gate.set()
    assert job.get(timeout=WAIT).state is JobState.CANCELLED


def test_cancel_after_the_end_is_a_no_op() -> None:
    job = d.run([Task("a", lambda _c, _i: {"a": 1})])
    result = job.get(timeout=WAIT)
    assert job.cancel() is False
    assert job.get(timeout=WAIT) is result
    assert job.state is JobState.COMPLETED


def test_get_returns_at_once_after_cancel_even_if_a_task_ignores_is_active() -> None:
    release = threading.Event()
    started = threading.Event()

    def stubborn(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        started.set()
        release.wait(WAIT)
        return {"late": 1}

    job = d.run([Task("a", stubborn), Task("b", incer, ["a"])], ctx={"v": 0})
    try:
        assert started.wait(WAIT)
        job.cancel()
        result = job.get(timeout=1.0)
    finally:
        release.set()
    assert result.state is JobState.CANCELLED
    assert result.ctx == {"v": 0}
    assert result.task_states == {"a": TaskState.CANCELLED, "b": TaskState.SKIPPED}


def test_nothing_starts_after_cancel() -> None:
    started: list[str] = []
    gate = threading.Event()

    def blocker(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        started.append("blocker")
        gate.wait(WAIT)
        return {}

    tasks = [Task("blocker", blocker)] + [
        Task(f"t{i}", lambda _c, _i, i=i: started.append(f"t{i}") or {}, ["blocker"])
        for i in range(20)
    ]
    job = d.run(tasks, max_concurrency=4)
    while not started:
        time.sleep(0.001)
    job.cancel()
    gate.set()
    time.sleep(0.05)
    assert started == ["blocker"]


def test_nothing_queued_in_a_user_executor_starts_after_cancel() -> None:
    gate = threading.Event()
    started: list[str] = []

    def work(name: str) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
        def fn(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
            started.append(name)
            gate.wait(WAIT)
            return {}

        return fn

    with ThreadPoolExecutor(1) as executor:
        tasks = [Task(f"t{i}", work(f"t{i}")) for i in range(3)]
        job = d.run(tasks, executor=executor, max_concurrency=3)
        deadline = time.monotonic() + WAIT
        while not started and time.monotonic() < deadline:
            time.sleep(0.005)
        assert job.cancel() is True
        gate.set()
    assert started == ["t0"]  # t1 and t2 were still queued in the executor


def test_a_job_can_be_cancelled_from_inside_a_task() -> None:
    holder: dict[str, d.Job] = {}
    ready = threading.Event()

    def canceller(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        ready.wait(WAIT)
        holder["job"].cancel()
        return {"after": is_active()}

    job = d.run([Task("a", canceller)])
    holder["job"] = job
    ready.set()
    result = job.get(timeout=WAIT)
    assert result.state is JobState.CANCELLED
    assert result.ctx == {}


# -- the Job future ------------------------------------------------------------


def test_job_is_a_pykka_threading_future_with_a_unique_id() -> None:
    jobs = [d.run([]) for _ in range(5)]
    assert all(isinstance(job, pykka.ThreadingFuture) for job in jobs)
    assert len({job.id for job in jobs}) == 5
    for job in jobs:
        assert job.get(timeout=WAIT).ok
        assert job.done()


def test_get_with_a_timeout_raises_pykka_timeout() -> None:
    gate = threading.Event()
    job = d.run([Task("a", lambda _c, _i: gate.wait(WAIT) and {})])
    try:
        assert job.state is JobState.RUNNING or job.state is JobState.IDLE
        assert not job.done()
        with pytest.raises(pykka.Timeout):
            job.get(timeout=0.01)
    finally:
        gate.set()
    assert job.get(timeout=WAIT).ok


def test_a_job_can_be_awaited_without_blocking_the_loop() -> None:
    gate = threading.Event()

    async def main() -> tuple[d.JobResult, int]:
        job = d.run([Task("a", lambda _c, _i: gate.wait(WAIT) and {"a": 1})])
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.01)
                ticks += 1
            gate.set()

        ticker = asyncio.create_task(tick())
        result = await job
        await ticker
        return result, ticks

    result, ticks = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert result.ctx == {"a": 1}
    assert ticks == 5


def test_awaiting_a_finished_job_returns_its_result() -> None:
    job = d.run([])
    job.get(timeout=WAIT)

    async def main() -> d.JobResult:
        return await job

    assert asyncio.run(main()).ok


# -- listeners -------------------------------------------------------------------


def test_every_listener_gets_every_event_in_order() -> None:
    first, second = Recorder(), Recorder()
    tasks = [Task("a", incer), Task("b", incer, ["a"])]
    job = d.run(tasks, ctx={"v": 0}, listeners=[first, second])
    job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert first.events == second.events
    assert first.events[0].new_state is JobState.RUNNING  # type: ignore[union-attr]
    assert isinstance(first.events[0], JobEvent)
    assert isinstance(first.events[-1], JobEvent)
    assert first.events[-1].new_state is JobState.COMPLETED
    assert all(isinstance(e, TaskEvent) for e in first.events[1:-1])


def test_each_event_old_state_is_the_previous_new_state() -> None:
    tasks = [Task(f"t{i}", incer, [f"t{i - 1}"] if i else ()) for i in range(10)]
    _, recorder = run_and_record(tasks, ctx={"v": 0})
    last: dict[str, TaskState] = {}
    for event in recorder.task_events():
        assert event.old_state is last.get(event.task, TaskState.UNSCHEDULED)
        assert (event.old_state, event.new_state) in d._states.TASK_TRANSITIONS
        last[event.task] = event.new_state


def test_a_listener_that_raises_keeps_receiving_events(logs: list[dict[str, Any]]) -> None:
    received: list[d.Event] = []

    def bad(event: d.Event) -> None:
        received.append(event)
        raise RuntimeError("listener bug")

    job = d.run([Task("a", incer)], ctx={"v": 0}, listeners=[bad])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)
    assert len(received) == 5  # job start, ready, running, completed, job end
    assert any(entry["event"] == "listener_failed" for entry in logs)


def test_a_blocked_listener_delays_nobody() -> None:
    gate = threading.Event()
    fast = Recorder()

    def slow(_event: d.Event) -> None:
        gate.wait(WAIT)

    job = d.run([Task("a", incer)], ctx={"v": 0}, listeners=[slow, fast])
    try:
        assert job.get(timeout=WAIT).ok
        assert not job.wait_for_listeners(0.05)
    finally:
        gate.set()
    assert job.wait_for_listeners(WAIT)
    assert len(fast.events) == 5


def test_an_actor_ref_listener_is_told_every_event() -> None:
    got: list[d.Event] = []
    finished = threading.Event()

    class Monitor(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            got.append(message)
            if isinstance(message, JobEvent) and message.new_state.is_terminal:
                finished.set()

    monitor = Monitor.start()
    try:
        assert d.run([Task("a", incer)], ctx={"v": 0}, listeners=[monitor]).get(timeout=WAIT).ok
        assert finished.wait(WAIT)
        assert [type(e).__name__ for e in got] == [
            "JobEvent",
            "TaskEvent",
            "TaskEvent",
            "TaskEvent",
            "JobEvent",
        ]
    finally:
        monitor.stop()


def test_a_stopped_actor_ref_listener_does_not_disturb_the_job() -> None:
    class Monitor(pykka.ThreadingActor):
        pass

    monitor = Monitor.start()
    monitor.stop()
    job = d.run([Task("a", incer)], ctx={"v": 0}, listeners=[monitor])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)


def test_wait_for_listeners_knows_the_listeners_as_soon_as_run_returns() -> None:
    gate = threading.Event()
    job = d.run([Task("a", lambda c, a: {})], listeners=[lambda e: gate.wait(WAIT)])
    try:
        assert job.wait_for_listeners(timeout=0) is False
        assert job.dropped_events == (0,)
    finally:
        gate.set()
    assert job.wait_for_listeners(WAIT)


# -- structured logs -------------------------------------------------------------


def test_every_transition_is_logged_with_its_level(logs: list[dict[str, Any]]) -> None:
    calls = []

    def flaky(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        return {"secret": "value"}

    job = d.run([Task("a", flaky)])
    assert job.get(timeout=WAIT).ok
    jobs = [e for e in logs if e["event"] == "job_transition"]
    tasks = [e for e in logs if e["event"] == "task_transition"]
    assert [(e["old_state"], e["new_state"], e["log_level"]) for e in jobs] == [
        ("idle", "running", "info"),
        ("running", "completed", "info"),
    ]
    assert all(e["job_id"] == job.id for e in jobs + tasks)
    assert [(e["old_state"], e["new_state"], e["attempt"], e["log_level"]) for e in tasks] == [
        ("unscheduled", "ready", 0, "debug"),
        ("ready", "running", 1, "debug"),
        ("running", "exception", 1, "warning"),
        ("exception", "ready", 1, "debug"),
        ("ready", "running", 2, "debug"),
        ("running", "completed", 2, "debug"),
    ]
    assert all(e["task"] == "a" for e in tasks)
    exception_entry = tasks[2]
    # No live exception reaches the renderer: its type and message, as text.
    assert "exc_info" not in exception_entry
    assert (exception_entry["error_type"], exception_entry["error"]) == ("ValueError", "once")
    assert "value" not in repr(logs)  # results are never logged


def test_failures_are_logged_at_error(logs: list[dict[str, Any]]) -> None:
    result = d.run([Task("a", thrower, max_retries=0)]).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    failed = [e for e in logs if e.get("new_state") == "failed" and "task" in e]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    assert "exc_info" not in failed[0]
    assert failed[0]["error_type"] == "RuntimeError"
    # The last attempt's traceback, as plain text: frames and message.
    assert "in thrower" in failed[0]["traceback"]
    assert failed[0]["traceback"].endswith("RuntimeError: BOOM")


def test_filtered_debug_entries_are_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # The autouse fixture filters below CRITICAL: the engine must check the
    # level first and hand its logger no entry at all. A spy between
    # structlog and the engine sees every entry handed over.
    handed: list[str] = []
    get_logger = structlog.get_logger

    class Spy:
        def __init__(self, bound: Any) -> None:
            self._bound = bound

        def bind(self, **values: Any) -> Spy:
            return Spy(self._bound.bind(**values))

        def is_enabled_for(self, level: int) -> bool:
            return bool(self._bound.is_enabled_for(level))

        def __getattr__(self, name: str) -> Any:
            handed.append(name)  # a logging method, about to get an entry
            return getattr(self._bound, name)

    monkeypatch.setattr(structlog, "get_logger", lambda *a, **kw: Spy(get_logger(*a, **kw)))
    calls: list[int] = []

    def flaky(ctx: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) % 2:
            raise ValueError("every other call")  # a warning entry, filtered too
        return {"b": ctx["v"]}

    tasks = [Task("a", incer), Task("b", flaky, ["a"])]
    job = d.run(tasks, ctx={"v": 0})
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)  # whatever was queued is written
    assert handed == []

    # The spy is no vacuous witness: with debug enabled, the entries reach it.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        processors=[structlog.processors.KeyValueRenderer()],
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
    )
    job = d.run(tasks, ctx={"v": 0})
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)
    assert "log" in handed


# -- option errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"max_concurrency": True}, TypeError, "max_concurrency"),
        ({"max_concurrency": 1.5}, TypeError, "max_concurrency"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": False}, TypeError, "max_retries"),
        ({"ctx": [("a", 1)]}, TypeError, "ctx"),
        ({"executor": "threads"}, TypeError, "executor"),
        ({"listeners": [42]}, TypeError, "listener #0"),
        ({"listeners": print}, TypeError, "listeners"),
    ],
)
def test_bad_run_options_raise_a_clear_error(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        d.run([Task("a", incer)], **options)


def test_an_infinite_timeout_means_none() -> None:
    tasks = [Task("a", lambda _c, _i: {"a": 1}, timeout=math.inf)]
    assert d.run(tasks, timeout=math.inf).get(timeout=WAIT).ok


def test_a_shut_down_executor_fails_the_attempts_clearly() -> None:
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    result = d.run([Task("a", incer)], ctx={"v": 0}, executor=executor, max_retries=1).get(
        timeout=WAIT
    )
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, RuntimeError)
    assert result.attempts == {"a": 2}


# -- internal errors -------------------------------------------------------------


def test_an_internal_error_in_the_job_actor_fails_the_job_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _scheduler

    def broken(*_args: Any) -> None:
        raise KeyError("bookkeeping bug")

    monkeypatch.setattr(_scheduler.Scheduler, "completed", broken)
    result = d.run([Task("a", incer), Task("b", incer, ["a"])], ctx={"v": 0}).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.InternalError)
    assert isinstance(result.exception.__cause__, KeyError)
    assert "job_actor" in str(result.exception)
    assert result.task_states == {"a": TaskState.CANCELLED, "b": TaskState.SKIPPED}


def test_an_internal_error_in_the_retry_policy_fails_the_job_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _job_actor

    def broken(*_args: Any) -> bool:
        raise ZeroDivisionError("policy bug")

    monkeypatch.setattr(_job_actor, "retry_allowed", broken)
    result = d.run([Task("a", thrower)]).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.InternalError)
    assert "job_actor" in str(result.exception)
    assert isinstance(result.exception.__cause__, ZeroDivisionError)


def test_a_timer_that_breaks_in_the_supervisor_ends_the_job_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _job_actor

    def broken(_self: Any) -> None:
        raise ZeroDivisionError("timer bug")

    monkeypatch.setattr(_job_actor.JobActor, "_job_deadline_passed", broken)
    release = threading.Event()

    def waits(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        release.wait(WAIT)
        return {}

    try:
        result = d.run([Task("a", waits)], timeout=0.05).get(timeout=WAIT)
    finally:
        release.set()
    assert result.state is JobState.CANCELLED
    assert isinstance(result.exception, d.InternalError)
    assert "timer" in str(result.exception)


def test_an_internal_error_while_ending_still_resolves_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _scheduler

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("cannot even end")

    monkeypatch.setattr(_scheduler.Scheduler, "completed", broken)
    monkeypatch.setattr(_scheduler.Scheduler, "end", broken)
    job = d.run([Task("a", incer)], ctx={"v": 0})
    result = job.get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.InternalError)
    assert result.ctx == {"v": 0}
    assert job.state is JobState.FAILED


# -- offers: pool threads starting the next READY node themselves ------------------


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_tasks_start_in_ready_order_and_within_the_limit_when_threads_take_offers(
    concurrency: int,
) -> None:
    tasks = [Task(f"t{i:03}", lambda _c, _i: {}) for i in range(300)]
    tasks += [Task("sink", lambda _c, _i: {}, [t.name for t in tasks[::7]])]
    result, recorder = run_and_record(tasks, max_concurrency=concurrency)
    assert result.ok
    ready_order = [e.task for e in recorder.task_events() if e.new_state is TaskState.READY]
    start_order = [e.task for e in recorder.task_events() if e.new_state is TaskState.RUNNING]
    assert start_order == ready_order
    running = 0
    for event in recorder.task_events():
        if event.new_state is TaskState.RUNNING:
            running += 1
            assert running <= concurrency
        elif event.old_state is TaskState.RUNNING:
            running -= 1


def test_a_task_started_from_an_offer_sees_the_output_of_the_one_before_it() -> None:
    # With one slot every task starts after the previous one completed, so,
    # as in Daguerreo, each sees the whole ctx merged so far.
    tasks = [Task(f"t{i}", incer) for i in range(200)]
    assert d.run(tasks, ctx={"v": 0}, max_concurrency=1).get(timeout=WAIT).ctx == {"v": 200}


def test_a_deadline_that_loses_the_race_to_a_finished_attempt_is_ignored() -> None:
    # Tasks that finish right at their deadline either complete or time out;
    # either way nothing runs twice at once and the job ends consistently.
    def at_deadline(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        time.sleep(0.002)
        return {}

    tasks = [
        Task(f"t{i}", at_deadline, timeout=0.002, max_retries=3, continue_on_failure=True)
        for i in range(100)
    ]
    result, recorder = run_and_record(tasks, max_concurrency=2)
    assert result.state is JobState.COMPLETED
    running = 0
    for event in recorder.task_events():
        if event.new_state is TaskState.RUNNING:
            running += 1
            assert running <= 2
        elif event.old_state is TaskState.RUNNING:
            running -= 1
    for name, state in result.task_states.items():
        assert state in (TaskState.COMPLETED, TaskState.FAILED), name


def test_an_unconfigured_structlog_gets_only_warnings_and_errors() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import daguerreo_actors as d\n"
            "def bad(c, a): raise ValueError('boom')\n"
            "job = d.run([d.Task('ok', lambda c, a: {}), d.Task('bad', bad, max_retries=0)])\n"
            "r = job.get()\n"
            "job.wait_for_listeners()\n"  # the engine's log lines are written by now
            "print('STATE', r.state)\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "STATE failed" in out
    assert "task_transition" in out  # the failure, at warning and error
    assert "ValueError" in out
    assert "new_state=ready" not in out  # no debug entries
    assert "job_transition" not in out  # no info entries


def test_a_structlog_processor_that_raises_never_hangs_the_job() -> None:
    def explode(_logger: Any, _name: str, entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("new_state") == "completed":
            raise RuntimeError("broken processor")
        return entry

    structlog.configure(
        processors=[explode, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
    )

    def run_to_the_end() -> d.JobResult:
        job = d.run([Task("a", incer), Task("b", incer, ["a"])], ctx={"v": 0})
        result = job.get(timeout=WAIT)
        assert job.wait_for_listeners(WAIT)  # the log writer has written (and warned)
        return result

    with pytest.warns(RuntimeWarning, match="broken processor"):
        result = run_to_the_end()
    assert result.ok
    assert result.ctx == {"v": 2}
