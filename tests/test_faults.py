"""Faults: broken internals, hostile listeners, cancels at awkward moments, interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from helpers import ROOT, WAIT

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobState, Task, TaskEvent, TaskState, _listeners, _task_actor
from daguerreo_actors.testing import VirtualClock

#: What the virtual clock's time() reads at 0 (event timestamps on it).
EPOCH = 1_700_000_000.0


def on_clock(event: d.Event) -> float:
    """The event's time on a virtual clock, in seconds from its start."""
    return round(event.timestamp - EPOCH, 6)


def ok(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {"ok": True}


# -- internal errors -----------------------------------------------------------


def test_an_internal_error_in_a_task_actor_fails_the_job_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise AttributeError("task actor bug")

    monkeypatch.setattr(_task_actor.TaskActor, "returned", broken)
    started = time.monotonic()
    result = d.run([Task("a", ok), Task("b", ok, ["a"])], timeout=5).get(timeout=WAIT)
    assert time.monotonic() - started < 5
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.InternalError)
    assert "task_actor 'a'" in str(result.exception)
    assert isinstance(result.exception.__cause__, AttributeError)


def test_an_internal_error_in_a_listener_proxy_leaves_the_job_unaffected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("proxy bug")

    monkeypatch.setattr(_listeners.ListenerProxy, "_deliver", broken)
    job = d.run([Task("a", ok)], listeners=[lambda _e: None])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)


# -- hostile listeners ---------------------------------------------------------


def test_a_blocked_listener_backlog_is_bounded_and_drops_are_reported(
    monkeypatch: pytest.MonkeyPatch, logs: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(_listeners, "LISTENER_BACKLOG_LIMIT", 20)
    gate = threading.Event()
    slow: list[d.Event] = []

    def blocked(event: d.Event) -> None:
        gate.wait(WAIT)
        slow.append(event)

    tasks = [Task(f"t{i}", ok) for i in range(50)]
    job = d.run(tasks, listeners=[blocked])
    try:
        assert job.get(timeout=WAIT).ok
    finally:
        gate.set()
    assert job.wait_for_listeners(WAIT)
    (dropped,) = job.dropped_events
    total = 2 + 3 * 50  # job start, ready/running/completed per task, job end
    assert dropped > 0
    assert len(slow) + dropped == total
    assert len(slow) <= 20 + 1 + 3  # the bound, the final event, one batch's slack
    # Kept: the start of the stream, then the final JobEvent.
    assert isinstance(slow[0], JobEvent)
    assert slow[0].new_state is JobState.RUNNING
    assert isinstance(slow[-1], JobEvent)
    assert slow[-1].new_state is JobState.COMPLETED
    assert len({id(e) for e in slow}) == len(slow)
    warnings = [e for e in logs if e["event"] == "listener_events_dropped"]
    assert [w["listener"] for w in warnings] == [0, 0]
    assert warnings[-1]["dropped"] == dropped


def test_a_listener_raising_base_exceptions_is_logged_and_kept(
    logs: list[dict[str, Any]],
) -> None:
    seen: list[d.Event] = []

    def hostile(event: d.Event) -> None:
        seen.append(event)
        raise KeyboardInterrupt("from a listener")

    job = d.run([Task("a", ok)], listeners=[hostile])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)
    assert len(seen) == 5
    assert sum(1 for e in logs if e["event"] == "listener_failed") == 5


# -- hostile exceptions --------------------------------------------------------


def test_an_exception_whose_str_raises_is_still_just_a_retried_failure(
    logs: list[dict[str, Any]],
) -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise KeyError("no str for you")

    calls: list[int] = []

    def flaky(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise UnprintableError()
        return {"ok": True}

    result = d.run([Task("a", flaky)]).get(timeout=WAIT)
    assert result.ok
    assert result.attempts == {"a": 2}
    failure = next(e for e in logs if e.get("new_state") == "exception")
    assert failure["error"] == "<unprintable UnprintableError>"


# -- cancel at awkward moments -------------------------------------------------


def test_cancel_during_a_retry_cancels_the_retried_attempt() -> None:
    calls: list[int] = []
    retrying = threading.Event()

    def flaky(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt fails")
        retrying.set()
        while is_active():
            time.sleep(0.002)
        return {"late": True}

    events: list[d.Event] = []
    job = d.run([Task("a", flaky)], listeners=[events.append])
    assert retrying.wait(WAIT)
    assert job.cancel() is True
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.CANCELLED
    assert result.task_states["a"] is TaskState.CANCELLED
    assert result.attempts["a"] == 2
    assert result.ctx == {}
    states = [e.new_state for e in events if isinstance(e, TaskEvent)]
    assert states[-3:] == [TaskState.READY, TaskState.RUNNING, TaskState.CANCELLED]


def test_cancel_while_a_timed_out_attempt_still_runs(clock: VirtualClock) -> None:
    timed_out = threading.Event()
    events: list[d.Event] = []

    def stuck(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        clock.sleep(100)
        return {"stuck": True}

    def watcher(event: d.Event) -> None:
        events.append(event)
        if isinstance(event, TaskEvent) and event.new_state is TaskState.TIMED_OUT:
            timed_out.set()

    job = d.run([Task("a", stuck, timeout=5, max_retries=5)], listeners=[watcher], clock=clock)
    clock.advance(5)
    assert timed_out.wait(WAIT)
    assert not job.done()  # its retry waits for the code, which runs on
    assert job.cancel() is True
    result = job.get(timeout=WAIT)
    assert result.state is JobState.CANCELLED
    assert result.task_states["a"] is TaskState.CANCELLED
    assert result.attempts["a"] == 1  # the retry never started
    assert result.ctx == {}
    assert job.cancel() is False
    assert job.wait_for_listeners(WAIT)
    steps = [(on_clock(e), e.old_state, e.new_state) for e in events if isinstance(e, TaskEvent)]
    assert steps[-2:] == [
        (5.0, TaskState.RUNNING, TaskState.TIMED_OUT),
        (5.0, TaskState.TIMED_OUT, TaskState.CANCELLED),
    ]
    clock.advance(95)  # the abandoned attempt's code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_the_job_timeout_during_a_retry_ends_it_timed_out(clock: VirtualClock) -> None:
    starts: list[float] = []

    def always_fails(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        starts.append(clock.now())
        clock.sleep(3)
        raise ValueError("never works")

    events: list[d.Event] = []
    job = d.run(
        [Task("a", always_fails)],
        max_retries=1000,
        timeout=20,
        clock=clock,
        listeners=[events.append],
    )
    clock.advance(19.999)
    assert not job.done()
    clock.advance(0.001)
    assert job.done()  # at its deadline, during the seventh attempt
    result = job.get(timeout=WAIT)
    assert result.state is JobState.TIMED_OUT
    assert result.task_states["a"] is TaskState.CANCELLED
    assert starts == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
    assert result.attempts["a"] == 7
    assert job.wait_for_listeners(WAIT)
    last = events[-1]
    assert isinstance(last, JobEvent)
    assert (on_clock(last), last.new_state) == (20.0, JobState.TIMED_OUT)
    clock.advance(1)  # the cancelled attempt's code raises at last
    assert job.wait_stopped(timeout=WAIT)


# -- interpreter exit ----------------------------------------------------------


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )


def test_the_interpreter_exits_with_a_job_still_running() -> None:
    started = time.monotonic()
    done = run_script(
        """
        import time
        import daguerreo_actors as d

        def forever(ctx, is_active):
            while True:  # ignores is_active on purpose
                time.sleep(0.01)

        job = d.run([d.Task("a", forever)], listeners=[lambda e: None])
        time.sleep(0.1)
        print("leaving with", job.state)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "leaving with running" in done.stdout
    assert time.monotonic() - started < 20


def test_a_job_awaited_to_the_end_loses_nothing_at_exit() -> None:
    done = run_script(
        """
        import logging
        import structlog
        import daguerreo_actors as d

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        tasks = [d.Task(f"t{i}", lambda c, a, i=i: {f"k{i}": i}) for i in range(500)]
        result = d.run(tasks).get(timeout=20)
        print(result.state, len(result.ctx), sum(result.ctx.values()))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["completed", "500", str(sum(range(500)))]


# -- timeouts given as odd numbers -----------------------------------------------


@pytest.mark.parametrize("timeout", [float("inf"), 10**400, 1e308])
def test_huge_timeouts_mean_no_timeout(timeout: float) -> None:
    result = d.run([Task("a", ok, timeout=timeout)], timeout=timeout).get(timeout=WAIT)
    assert result.ok


# -- promises of docs/guarantees.md not checked elsewhere ------------------------


def test_at_most_one_attempt_of_a_task_is_wanted_at_any_time(clock: VirtualClock) -> None:
    attempts: list[Callable[[], bool]] = []
    overlaps: list[int] = []
    starts: list[float] = []

    def slow_then_fast(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        # Every earlier attempt must already be abandoned when a new one starts.
        overlaps.extend(i for i, earlier in enumerate(attempts) if earlier())
        attempts.append(is_active)
        starts.append(clock.now())
        if len(attempts) < 3:
            clock.sleep(100)  # ignores is_active: keeps its thread busy
        return {"attempt": len(attempts)}

    # overlap: each retry starts while the attempt before it still runs.
    job = d.run([Task("a", slow_then_fast, timeout=5, overlap=True)], clock=clock)
    clock.advance(10)
    result = job.get(timeout=WAIT)
    assert result.ok
    assert result.attempts["a"] == 3
    assert result.ctx == {"attempt": 3}
    assert overlaps == []
    assert starts == [0.0, 5.0, 10.0]  # each at the deadline of the one before it
    clock.advance(100)  # the abandoned attempts' code returns at last
    assert job.wait_stopped(timeout=WAIT)


def test_a_listener_may_cancel_the_job_it_listens_to() -> None:
    holder: dict[str, d.Job] = {}
    gate = threading.Event()

    def canceller(event: d.Event) -> None:
        if isinstance(event, TaskEvent) and event.new_state is TaskState.RUNNING:
            gate.wait(WAIT)
            holder["job"].cancel()

    def waits(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        while is_active():
            time.sleep(0.002)
        return {}

    job = d.run([Task("a", waits)], listeners=[canceller])
    holder["job"] = job
    gate.set()
    assert job.get(timeout=WAIT).state is JobState.CANCELLED
    assert job.wait_for_listeners(WAIT)


def test_events_are_frozen() -> None:
    events: list[d.Event] = []
    job = d.run([Task("a", ok)], listeners=[events.append])
    job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    with pytest.raises(AttributeError):
        events[1].new_state = TaskState.FAILED  # type: ignore[misc]
