"""Honest time on real tiers: no overlap, stragglers, kill_after, interrupts, heartbeats.

These tests use real threads and processes on purpose (what a thread or a
worker process does when its attempt is abandoned is what they check).
Every wait has a deadline; the engine's timing logic alone is tested on
the virtual clock (``test_virtual_clock.py``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tier_tasks
from helpers import WAIT, Ctx, IsActive

import daguerreo_actors as d
from daguerreo_actors import JobState, ProcessTier, Task, TaskEvent, TaskState
from daguerreo_actors._tier_pebble import KILL_GRACE


class Counter:
    """Counts the attempts of a task whose code runs at once (the task counts itself)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self.running -= 1


def ignoring(counter: Counter, seconds: float) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    """A task that never looks at is_active() and takes ``seconds``."""

    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        with counter:
            time.sleep(seconds)
        return {"done": True}

    return fn


def events_of(events: list[Any], task: str) -> list[tuple[str, str, int]]:
    return [
        (e.old_state.value, e.new_state.value, e.attempt)
        for e in events
        if isinstance(e, TaskEvent) and e.task == task
    ]


# -- no overlap ------------------------------------------------------------------------


def test_a_timed_out_thread_task_never_runs_two_attempts_at_once_and_the_job_ends_on_time() -> None:
    counter = Counter()
    events: list[Any] = []
    task = Task("a", ignoring(counter, 0.4), timeout=0.1, max_retries=2)
    job = d.run([task], timeout=0.6, listeners=[events.append])
    result = job.get(timeout=WAIT)
    # The job ended at its deadline (0.6 s) while the second attempt's code
    # (started at 0.4 s, when the first returned) still ran until 0.8 s.
    assert result.state is JobState.TIMED_OUT
    assert [(s.task, s.attempt) for s in job.stragglers()] == [("a", 2)]
    assert job.wait_stopped(timeout=WAIT)
    assert job.stragglers() == ()
    assert counter.most == 1
    assert counter.started == 2
    assert job.wait_for_listeners(timeout=WAIT)
    assert events_of(events, "a") == [
        ("unscheduled", "ready", 0),
        ("ready", "running", 1),
        ("running", "timed_out", 1),
        ("timed_out", "ready", 1),
        ("ready", "running", 2),
        ("running", "timed_out", 2),
        ("timed_out", "cancelled", 2),
    ]


def test_with_overlap_the_retry_runs_beside_the_timed_out_attempt() -> None:
    counter = Counter()
    task = Task("a", ignoring(counter, 0.4), timeout=0.1, max_retries=2, overlap=True)
    job = d.run([task])
    result = job.get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert job.wait_stopped(timeout=WAIT)
    assert counter.started == 3
    assert counter.most >= 2


def test_the_retry_waits_for_the_code_and_the_next_task_for_the_slot() -> None:
    release = threading.Event()
    order: list[str] = []

    def stuck(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        order.append("stuck")
        assert release.wait(WAIT)
        return {}

    def other(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        order.append("other")
        return {}

    tasks = [
        Task("stuck", stuck, timeout=0.05, max_retries=0, continue_on_failure=True, priority=1),
        Task("other", other),
    ]
    job = d.run(tasks, max_concurrency=1)
    # The timed-out attempt keeps its slot: "other" cannot start.
    assert not job.wait_stopped(timeout=0.3)
    assert order == ["stuck"]
    release.set()
    result = job.get(timeout=WAIT)
    assert result.task_states["stuck"] is TaskState.FAILED
    assert result.task_states["other"] is TaskState.COMPLETED
    assert order == ["stuck", "other"]


# -- stragglers ------------------------------------------------------------------------


def test_stragglers_attempt_overran_and_wait_stopped_report_exactly_the_stragglers(
    logs: list[dict[str, Any]],
) -> None:
    release = threading.Event()

    def slow(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        assert release.wait(WAIT)
        return {"late": True}

    def quick(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        return {"quick": True}

    tasks = [
        Task("slow", slow, timeout=0.05, max_retries=0, kill_after=0.1),
        Task("quick", quick),
    ]
    job = d.run(tasks)
    result = job.get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert "late" not in result.ctx
    [straggler] = job.stragglers()
    assert (straggler.task, straggler.attempt) == ("slow", 1)
    assert straggler.overrun >= 0.0
    assert not job.wait_stopped(timeout=0.3)  # kill_after passes meanwhile
    release.set()
    assert job.wait_stopped(timeout=WAIT)
    assert job.stragglers() == ()
    overrunning = [e for e in logs if e["event"] == "attempt_overrunning"]
    overran = [e for e in logs if e["event"] == "attempt_overran"]
    assert [(e["task"], e["attempt"]) for e in overrunning] == [("slow", 1)]
    assert overrunning[0]["seconds_past"] >= 0.1
    assert [(e["task"], e["attempt"], e["result_discarded"]) for e in overran] == [
        ("slow", 1, True)
    ]
    assert overran[0]["seconds_past"] >= overrunning[0]["seconds_past"]
    # Nothing of the discarded result reaches the log.
    assert all("late" not in e.get("result_keys", ()) for e in logs)


def test_an_attempt_that_returns_in_time_is_no_straggler() -> None:
    job = d.run([Task("a", lambda _c, _a: {"x": 1}, timeout=5)])
    assert job.get(timeout=WAIT).ok
    assert job.stragglers() == ()
    assert job.wait_stopped(timeout=WAIT)


# -- interrupt=True --------------------------------------------------------------------


def test_interrupt_stops_a_pure_python_busy_loop_and_its_finally_runs() -> None:
    cleaned = threading.Event()

    def busy(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        n = 0
        try:
            while True:
                n += 1
        finally:
            cleaned.set()

    task = Task("busy", busy, timeout=0.05, max_retries=0, kill_after=0.05, interrupt=True)
    job = d.run([task])
    assert job.get(timeout=WAIT).state is JobState.FAILED
    assert job.wait_stopped(timeout=WAIT)
    assert cleaned.is_set()


def test_without_interrupt_a_busy_thread_is_left_running_and_reported() -> None:
    stop = threading.Event()

    def busy(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        while not stop.is_set():
            pass
        return {}

    job = d.run([Task("busy", busy, timeout=0.05, max_retries=0, kill_after=0.05)])
    assert job.get(timeout=WAIT).state is JobState.FAILED
    assert not job.wait_stopped(timeout=0.3)  # cooperative only: it runs on
    assert [s.task for s in job.stragglers()] == ["busy"]
    stop.set()
    assert job.wait_stopped(timeout=WAIT)


# -- the process tier ------------------------------------------------------------------


@pytest.fixture
def tier() -> Iterator[ProcessTier]:
    with ProcessTier(max_workers=1) as tier:
        yield tier


def test_a_stuck_process_task_is_killed_after_kill_after_and_its_retry_succeeds(
    tier: ProcessTier, tmp_path: Path
) -> None:
    events: list[Any] = []
    kill_after = 0.5
    task = Task(
        "stuck", tier_tasks.stuck_first_attempt, timeout=1.0, max_retries=1, kill_after=kill_after
    )
    job = d.run(
        [task], ctx={"marker": str(tmp_path / "m")}, executor=tier, listeners=[events.append]
    )
    result = job.get(timeout=WAIT)
    assert result.ok, result.failure
    assert result.attempts["stuck"] == 2
    first_pid = int((tmp_path / "m").read_text())
    assert result.ctx["pid"] != first_pid  # the stuck worker was replaced
    assert job.wait_for_listeners(timeout=WAIT)
    [timed_out] = [e for e in events if getattr(e, "new_state", None) is TaskState.TIMED_OUT]
    [retry] = [
        e
        for e in events
        if isinstance(e, TaskEvent) and e.new_state is TaskState.RUNNING and e.attempt == 2
    ]
    # The retry starts once the killed worker is gone: within kill_after + 1.5 s.
    assert retry.timestamp - timed_out.timestamp <= kill_after + KILL_GRACE + 0.5
    # The same pool runs another job afterwards.
    again = d.run([Task("sq", tier_tasks.square)], ctx={"n": 7}, executor=tier).get(timeout=WAIT)
    assert again.ok
    assert again.ctx["square"] == 49


def test_a_worker_that_exits_mid_task_is_an_exception_and_the_retry_works(
    tier: ProcessTier, tmp_path: Path
) -> None:
    events: list[Any] = []
    task = Task("exits", tier_tasks.exits_first_attempt, max_retries=1)
    job = d.run(
        [task], ctx={"marker": str(tmp_path / "m")}, executor=tier, listeners=[events.append]
    )
    result = job.get(timeout=WAIT)
    assert result.ok, result.failure
    assert result.ctx["survived"] is True
    assert job.wait_for_listeners(timeout=WAIT)
    [failed] = [e for e in events if getattr(e, "new_state", None) is TaskState.EXCEPTION]
    assert failed.attempt == 1
    assert type(failed.exception).__name__ == "ProcessExpired"


def test_executor_processes_runs_one_task_in_a_process_and_the_rest_on_threads() -> None:
    tasks = [
        Task("cpu", tier_tasks.pid, executor="processes"),
        Task("io", lambda _c, _a: {"here": os.getpid()}),
    ]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.ok, result.failure
    assert result.ctx["here"] == os.getpid()
    assert result.ctx["pid"] != os.getpid()


def test_a_process_task_that_polls_is_spared_by_its_heartbeat_and_one_that_stops_is_not(
    tier: ProcessTier,
) -> None:
    events: list[Any] = []
    tasks = [
        Task("poller", tier_tasks.poll_for, heartbeat=0.5, max_retries=0),
        Task("sleeper", tier_tasks.sleep_then_return, ["poller"], heartbeat=0.5, max_retries=0),
    ]
    ctx = {"seconds": 1.5, "sleep": 1.5}
    job = d.run(tasks, ctx=ctx, executor=tier, listeners=[events.append])
    result = job.get(timeout=WAIT)
    assert result.task_states["poller"] is TaskState.COMPLETED
    assert result.task_states["sleeper"] is TaskState.FAILED
    assert job.wait_for_listeners(timeout=WAIT)
    [timed_out] = [e for e in events if getattr(e, "new_state", None) is TaskState.TIMED_OUT]
    assert (timed_out.task, timed_out.reason) == ("sleeper", "heartbeat")


# -- heartbeats on threads -------------------------------------------------------------


def test_heartbeats_time_out_a_thread_task_that_stops_polling_and_spare_one_that_polls(
    logs: list[dict[str, Any]],
) -> None:
    release = threading.Event()
    events: list[Any] = []

    def poller(_ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            is_active()
            time.sleep(0.02)
        return {"polled": True}

    def stops(_ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        is_active()
        release.wait(WAIT)  # stops polling
        return {}

    tasks = [
        Task("poller", poller, heartbeat=0.2, max_retries=0),
        Task("stops", stops, heartbeat=0.2, max_retries=0, continue_on_failure=True),
    ]
    job = d.run(tasks, listeners=[events.append])
    try:
        result = job.get(timeout=WAIT)
    finally:
        release.set()
    assert result.task_states["poller"] is TaskState.COMPLETED
    assert result.task_states["stops"] is TaskState.FAILED
    assert job.wait_stopped(timeout=WAIT)
    assert job.wait_for_listeners(timeout=WAIT)
    [timed_out] = [e for e in events if getattr(e, "new_state", None) is TaskState.TIMED_OUT]
    assert (timed_out.task, timed_out.reason) == ("stops", "heartbeat")
    entries = [e for e in logs if e.get("new_state") == "timed_out"]
    assert [(e["task"], e["reason"]) for e in entries] == [("stops", "heartbeat")]


def test_a_deadline_timeout_says_deadline() -> None:
    events: list[Any] = []
    release = threading.Event()

    def stuck(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        release.wait(WAIT)
        return {}

    job = d.run([Task("a", stuck, timeout=0.05, max_retries=0)], listeners=[events.append])
    try:
        job.get(timeout=WAIT)
    finally:
        release.set()
    assert job.wait_for_listeners(timeout=WAIT)
    reasons = [(e.new_state, e.reason) for e in events if isinstance(e, TaskEvent)]
    assert (TaskState.TIMED_OUT, "deadline") in reasons
    assert all(r is None for s, r in reasons if s is not TaskState.TIMED_OUT)
    assert job.wait_stopped(timeout=WAIT)


# -- async -----------------------------------------------------------------------------


def test_an_async_task_that_swallows_its_cancellation_is_a_straggler(
    logs: list[dict[str, Any]],
) -> None:
    async def stubborn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # swallowed: it goes on
        return {"late": True}

    job = d.run([Task("stubborn", stubborn, timeout=0.05, max_retries=0)])
    assert job.get(timeout=WAIT).state is JobState.FAILED
    assert [s.task for s in job.stragglers()] == ["stubborn"]
    assert job.wait_stopped(timeout=WAIT)
    overran = [e for e in logs if e["event"] == "attempt_overran"]
    assert [(e["task"], e["result_discarded"]) for e in overran] == [("stubborn", True)]


# -- progress --------------------------------------------------------------------------


def test_progress_values_reach_the_job_the_events_the_log_and_the_report(
    logs: list[dict[str, Any]],
) -> None:
    halfway = threading.Event()
    go_on = threading.Event()
    events: list[Any] = []
    report = d.JobReport()

    def work(_ctx: Ctx, is_active: Callable[..., bool]) -> dict[str, Any]:
        is_active("1/2 rows")
        halfway.set()
        assert go_on.wait(WAIT)
        is_active({"rows": 2})
        return {}

    job = d.run([Task("load", work)], listeners=[events.append, report])
    assert halfway.wait(WAIT)
    assert job.progress() == {"load": "1/2 rows"}
    go_on.set()
    assert job.get(timeout=WAIT).ok
    assert job.progress() == {}
    assert job.wait_for_listeners(timeout=WAIT)
    [done] = [e for e in events if getattr(e, "new_state", None) is TaskState.COMPLETED]
    assert done.progress == {"rows": 2}
    assert report.tasks["load"].attempts[0].progress == "{'rows': 2}"
    progress_entries = [e for e in logs if e["event"] == "task_progress"]
    assert progress_entries[0]["progress"] == "1/2 rows"
    [completed] = [
        e for e in logs if e["event"] == "task_transition" and e["new_state"] == "completed"
    ]
    assert completed["progress"] == "{'rows': 2}"


def test_a_process_pool_executor_cannot_stop_a_call_so_its_straggler_is_reported(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ProcessPoolExecutor

    marker = tmp_path / "returned"
    task = Task("stuck", tier_tasks.sleep_then_mark, timeout=0.2, max_retries=0, kill_after=0.1)
    with ProcessPoolExecutor(max_workers=1) as pool:
        job = d.run([task], ctx={"marker": str(marker), "sleep": 1.5}, executor=pool)
        assert job.get(timeout=WAIT).failure_reason is TaskState.TIMED_OUT
        assert not job.wait_stopped(timeout=0.5)  # kill_after passed: nothing forced
        assert [s.task for s in job.stragglers()] == ["stuck"]
        assert job.wait_stopped(timeout=WAIT)
        assert marker.exists()  # the code ran to its end
