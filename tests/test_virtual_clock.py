"""The engine's timing logic on ``testing.VirtualClock``: exact, and in milliseconds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import WAIT, Ctx, IsActive

import daguerreo_actors as d
from daguerreo_actors import InvalidTasksError, JobEvent, RetryPolicy, Task, TaskEvent
from daguerreo_actors._clock import real_monotonic
from daguerreo_actors.testing import VirtualClock, run_task

EPOCH = 1_700_000_000.0


def sequence(events: list[Any]) -> list[tuple[Any, ...]]:
    """(seconds on the clock, task or "job", old, new, attempt, retry_in, reason)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        at = round(e.timestamp - EPOCH, 6)
        if isinstance(e, JobEvent):
            out.append((at, "job", e.old_state.value, e.new_state.value))
        else:
            assert isinstance(e, TaskEvent)
            out.append(
                (at, e.task, e.old_state.value, e.new_state.value, e.attempt, e.retry_in, e.reason)
            )
    return out


def test_timeout_retries_backoff_and_a_job_timeout_give_this_exact_sequence_in_no_time() -> None:
    clock = VirtualClock()
    events: list[Any] = []

    def work(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        clock.sleep(100)  # ignores is_active(): its retries wait for it
        return {"done": True}

    retry = RetryPolicy(max_retries=3, delay=10, backoff=2)
    began = real_monotonic()
    job = d.run(
        [Task("a", work, timeout=30, retry=retry)],
        timeout=200,
        clock=clock,
        listeners=[events.append],
    )
    clock.advance(250)
    result = job.get(timeout=WAIT)
    real = real_monotonic() - began
    assert result.state.value == "timed_out"
    assert job.wait_for_listeners(timeout=WAIT)
    assert sequence(events) == [
        (0.0, "job", "idle", "running"),
        (0.0, "a", "unscheduled", "ready", 0, None, None),
        (0.0, "a", "ready", "running", 1, None, None),
        (30.0, "a", "running", "timed_out", 1, 10.0, "deadline"),
        # The retry was due at 40 s but waits for the code, which returns at 100 s.
        (100.0, "a", "timed_out", "ready", 1, None, None),
        (100.0, "a", "ready", "running", 2, None, None),
        (130.0, "a", "running", "timed_out", 2, 20.0, "deadline"),
        (200.0, "a", "timed_out", "cancelled", 2, None, None),
        (200.0, "job", "running", "timed_out"),
    ]
    # Real time: no timeout was waited for (the first of them would take 30 s).
    assert real < 5.0
    assert clock.now() == 250.0
    assert job.wait_stopped(timeout=WAIT)


def test_a_task_that_polls_is_retried_after_each_delay_with_exponential_backoff() -> None:
    clock = VirtualClock()
    events: list[Any] = []

    def polite(_ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        while is_active():
            clock.sleep(1)
        return {}

    retry = RetryPolicy(max_retries=3, delay=10, backoff=2)
    job = d.run(
        [Task("a", polite, timeout=30, retry=retry)], clock=clock, listeners=[events.append]
    )
    clock.advance(1000)
    assert job.get(timeout=WAIT).state.value == "failed"
    assert job.wait_for_listeners(timeout=WAIT)
    assert [
        (at, new, attempt, retry_in)
        for at, task, _old, new, attempt, retry_in, _r in (
            s for s in sequence(events) if s[1] == "a"
        )
        if new in ("running", "timed_out", "failed")
    ] == [
        (0.0, "running", 1, None),
        (30.0, "timed_out", 1, 10.0),
        (40.0, "running", 2, None),
        (70.0, "timed_out", 2, 20.0),
        (90.0, "running", 3, None),
        (120.0, "timed_out", 3, 40.0),
        (160.0, "running", 4, None),
        (190.0, "timed_out", 4, None),
        (190.0, "failed", 4, None),
    ]


def test_advance_returns_only_once_what_came_due_is_carried_out() -> None:
    clock = VirtualClock()
    job = d.run([Task("a", lambda _c, _a: clock.sleep(5) or {"x": 1})], clock=clock)
    clock.advance(4.999)
    assert not job.done()
    clock.advance(0.001)
    assert job.done()  # no real waiting: done when advance returns
    assert job.get(timeout=0).ctx["x"] == 1


def test_heartbeats_on_the_virtual_clock_spare_a_poller_and_time_out_a_sleeper() -> None:
    clock = VirtualClock()
    events: list[Any] = []

    def poller(_ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        for _ in range(10):
            clock.sleep(2)
            is_active()
        return {"polled": True}

    def sleeper(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        clock.sleep(100)
        return {}

    tasks = [
        Task("poller", poller, heartbeat=3, max_retries=0),
        Task("sleeper", sleeper, heartbeat=3, max_retries=0, continue_on_failure=True),
    ]
    job = d.run(tasks, clock=clock, listeners=[events.append])
    clock.advance(100)
    result = job.get(timeout=WAIT)
    assert result.task_states["poller"].value == "completed"
    assert job.wait_for_listeners(timeout=WAIT)
    timed_out = [s for s in sequence(events) if s[1] != "job" and s[3] == "timed_out"]
    assert timed_out == [(3.0, "sleeper", "running", "timed_out", 1, None, "heartbeat")]
    [done] = [s for s in sequence(events) if s[1] == "poller" and s[3] == "completed"]
    assert done[0] == 20.0


def test_attempt_overrunning_is_logged_kill_after_past_the_deadline_on_the_clock(
    logs: list[dict[str, Any]],
) -> None:
    clock = VirtualClock()

    def stuck(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        clock.sleep(60)
        return {}

    job = d.run([Task("a", stuck, timeout=10, max_retries=0, kill_after=7)], clock=clock)
    clock.advance(16.9)
    assert [e for e in logs if e["event"] == "attempt_overrunning"] == []
    clock.advance(0.1)
    [entry] = [e for e in logs if e["event"] == "attempt_overrunning"]
    assert (entry["task"], entry["attempt"], entry["seconds_past"]) == ("a", 1, 7.0)
    assert [(s.task, s.overrun) for s in job.stragglers()] == [("a", 7.0)]
    clock.advance(60)
    assert job.wait_stopped(timeout=WAIT)
    [overran] = [e for e in logs if e["event"] == "attempt_overran"]
    assert overran["seconds_past"] == 50.0


def test_a_job_on_a_virtual_clock_refuses_executors_naming_every_task() -> None:
    clock = VirtualClock()
    tasks = [
        Task("a", lambda _c, _a: {}),
        Task("b", lambda _c, _a: {}, executor=ThreadPoolExecutor(1)),
    ]
    with pytest.raises(InvalidTasksError) as caught:
        d.run(tasks, clock=clock, executor=ThreadPoolExecutor(1))
    assert [(e.task, e.code) for e in caught.value.errors] == [
        ("a", "invalid-field"),
        ("b", "invalid-field"),
    ]
    assert all("'executor'" in e.message for e in caught.value.errors)


def test_a_heartbeat_on_a_dask_executor_is_refused_naming_the_task_and_field() -> None:
    class Client:  # looks like a distributed.Client to the engine
        def submit(self, *_a: Any, **_k: Any) -> None: ...

        def gather(self, *_a: Any, **_k: Any) -> None: ...

    Client.__module__ = "distributed.client"
    tasks = [Task("beats", lambda _c, _a: {}, heartbeat=5), Task("fine", lambda _c, _a: {})]
    with pytest.raises(InvalidTasksError) as caught:
        d.run(tasks, executor=Client())
    [error] = caught.value.errors
    assert error.task == "beats"
    assert "'heartbeat'" in error.message


def test_run_rejects_something_that_is_not_a_clock() -> None:
    with pytest.raises(TypeError, match="clock must be"):
        d.run([Task("a", lambda _c, _a: {})], clock=object())  # type: ignore[arg-type]


# -- run_task --------------------------------------------------------------------------


def test_run_task_runs_one_function_alone_with_a_working_is_active() -> None:
    def fn(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        return {"double": ctx["n"] * 2, "active": is_active()}

    assert run_task(Task("t", fn), {"n": 4}) == {"double": 8, "active": True}
    assert run_task({"name": "t", "fn": fn}, {"n": 1}, timeout=0)["active"] is False


def test_run_task_checks_the_result_like_the_engine_and_lets_exceptions_through() -> None:
    with pytest.raises(TypeError, match="'t'"):
        run_task(Task("t", lambda _c, _a: [1, 2]))  # type: ignore[arg-type, return-value]

    def boom(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        raise KeyError("x")

    with pytest.raises(KeyError):
        run_task(Task("t", boom))
    with pytest.raises(InvalidTasksError):
        run_task({"name": "t"})


def test_run_task_runs_an_async_function() -> None:
    async def fn(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"v": ctx["v"] + 1}

    assert run_task(Task("t", fn), {"v": 1}) == {"v": 2}
