"""The process tier and async task functions, run for real."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tier_tasks
from conftest import busy_pool_threads, wait_until

import daguerreo_actors as d
from daguerreo_actors import JobState, Task, TaskEvent, TaskState

WAIT = 30.0


@pytest.fixture(scope="module")
def processes() -> Any:
    with ProcessPoolExecutor(2) as executor:
        # Start the workers now, outside any test's thread baseline.
        list(executor.map(abs, range(4)))
        yield executor


# -- processes ---------------------------------------------------------------------


def test_tasks_run_in_other_processes_and_their_results_come_back(
    processes: ProcessPoolExecutor,
) -> None:
    tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"]), Task("p", tier_tasks.pid)]
    result = d.run(tasks, ctx={"v": 0}, executor=processes).get(timeout=WAIT)
    assert result.ok
    assert result.ctx["v"] == 2
    assert result.ctx["pid"] != os.getpid()


def test_a_process_task_timeout_reaches_is_active_in_the_worker(
    processes: ProcessPoolExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "stopped"
    task = Task("loop", tier_tasks.loop_until_inactive, timeout=0.3, max_retries=0)
    started = time.time()
    result = d.run([task], ctx={"marker": str(marker)}, executor=processes).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.TIMED_OUT
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped_at = float(marker.read_text())
    assert stopped_at - started < 0.3 + 0.5
    assert "stopped" not in result.ctx  # the late result is discarded


def test_cancel_reaches_a_task_looping_in_another_process(
    processes: ProcessPoolExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "stopped"
    job = d.run(
        [Task("loop", tier_tasks.loop_until_inactive)],
        ctx={"marker": str(marker)},
        executor=processes,
    )
    time.sleep(0.2)
    cancelled_at = time.time()
    assert job.cancel() is True
    assert job.get(timeout=WAIT).state is JobState.CANCELLED
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert float(marker.read_text()) - cancelled_at < 0.5


def test_an_unpicklable_result_names_the_task_and_the_key(
    processes: ProcessPoolExecutor,
) -> None:
    task = Task("locky", tier_tasks.unpicklable_result, max_retries=0)
    result = d.run([task], executor=processes).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.NotPicklableError)
    assert "task 'locky'" in str(result.exception)
    assert "result key 'lock'" in str(result.exception)


def test_an_unpicklable_function_or_ctx_value_is_named(processes: ProcessPoolExecutor) -> None:
    result = d.run([Task("lambda", lambda c, a: {}, max_retries=0)], executor=processes).get(
        timeout=WAIT
    )
    assert isinstance(result.exception, d.NotPicklableError)
    assert "task 'lambda': its fn cannot be pickled" in str(result.exception)

    result = d.run(
        [Task("a", tier_tasks.inc, max_retries=0)],
        ctx={"v": 0, "lock": threading.Lock()},
        executor=processes,
    ).get(timeout=WAIT)
    assert isinstance(result.exception, d.NotPicklableError)
    assert "task 'a': ctx key 'lock'" in str(result.exception)


def test_a_broken_process_pool_fails_the_attempts_instead_of_hanging() -> None:
    executor = ProcessPoolExecutor(1)
    try:
        list(executor.map(abs, [1]))
        for process in list(executor._processes.values()):
            process.kill()
        result = d.run([Task("a", tier_tasks.inc, max_retries=1)], ctx={"v": 0}, executor=executor)
        assert result.get(timeout=WAIT).state is JobState.FAILED
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# The bug is inherited by forked children only; elsewhere ProcessPoolExecutor
# spawns fresh interpreters, which have no stale pool to inherit. CI is Linux.
@pytest.mark.skipif(sys.platform != "linux", reason="fork is the start method on Linux")
def test_a_job_runs_inside_a_forked_worker_of_a_process_pool() -> None:
    # Warm the parent's pool first: the child inherits its bookkeeping.
    assert d.run([Task("warm", tier_tasks.inc)], ctx={"v": 0}).get(timeout=WAIT).ok
    with ProcessPoolExecutor(1) as executor:
        result = d.run([Task("nested", tier_tasks.nested_job)], executor=executor).get(timeout=WAIT)
    assert result.ok, result.exception
    assert result.ctx == {"inner": 42}


def test_a_process_attempt_abandoned_while_its_ctx_is_pickled_never_runs_wanted(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "stopped"
    slow = tier_tasks.SlowToPickle(1.0)  # the hand-over pickles the ctx for a second
    with ProcessPoolExecutor(1) as executor:
        result = d.run(
            [Task("loop", tier_tasks.loop_until_inactive, timeout=0.01, max_retries=0)],
            ctx={"marker": str(marker), "slow": slow},
            executor=executor,
        ).get(timeout=WAIT)
        ended = time.monotonic()
        assert result.failure_reason is TaskState.TIMED_OUT
        # The hand-over runs on an engine pool thread: let it finish, then let
        # the one worker run whatever it was given before a probe.
        assert wait_until(lambda: busy_pool_threads() == 0)
        assert executor.submit(abs, -1).result(timeout=WAIT) == 1
        # The precondition: the attempt was abandoned while its ctx was pickled.
        assert slow.pickled_at is not None
        assert ended < slow.pickled_at
        assert not marker.exists()  # so it never ran
        # The marker is no vacuous witness: the same task, when it runs, writes it.
        control = d.run(
            [Task("loop", tier_tasks.loop_until_inactive, timeout=0.2, max_retries=0)],
            ctx={"marker": str(marker)},
            executor=executor,
        ).get(timeout=WAIT)
        assert control.failure_reason is TaskState.TIMED_OUT
    assert marker.exists()  # shutting the pool down waited for the control's call


# -- async task functions ------------------------------------------------------------


class Observed:
    def __init__(self) -> None:
        self.cancelled_at: float | None = None


def forever(observed: Observed) -> Callable[..., Any]:
    async def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            observed.cancelled_at = time.monotonic()
            raise
        return {"never": True}

    return fn


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_async_tasks_run_on_the_engine_loop_not_on_a_thread_each() -> None:
    threads: set[str] = set()

    async def fn(ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        await asyncio.sleep(0.05)
        return {ctx["name"]: is_active()}

    tasks = [Task(f"t{i}", fn) for i in range(20)]
    started = time.monotonic()
    result = d.run(tasks, ctx={"name": "x"}, max_concurrency=20).get(timeout=WAIT)
    assert result.ok
    assert result.ctx["x"] is True
    assert len(threads) == 1
    assert next(iter(threads)).startswith("daguerreo-loop")
    assert time.monotonic() - started < 1.0  # 20 x 50 ms, concurrently


def test_a_task_timeout_cancels_the_coroutine_mid_await() -> None:
    observed = Observed()
    started = time.monotonic()
    result = d.run([Task("a", forever(observed), timeout=0.2, max_retries=0)]).get(timeout=WAIT)
    assert result.failure_reason is TaskState.TIMED_OUT
    assert time.monotonic() - started < 0.2 + 0.5
    assert wait_for(lambda: observed.cancelled_at is not None)
    assert observed.cancelled_at is not None
    assert observed.cancelled_at - started < 0.2 + 0.5


def test_the_job_timeout_cancels_the_coroutine_mid_await() -> None:
    observed = Observed()
    started = time.monotonic()
    result = d.run([Task("a", forever(observed))], timeout=0.2).get(timeout=WAIT)
    assert result.state is JobState.TIMED_OUT
    assert result.task_states["a"] is TaskState.CANCELLED
    assert time.monotonic() - started < 0.2 + 0.5
    assert wait_for(lambda: observed.cancelled_at is not None)
    assert observed.cancelled_at is not None
    assert observed.cancelled_at - started < 0.2 + 0.5


def test_cancel_cancels_the_coroutine_mid_await() -> None:
    observed = Observed()
    events: list[d.Event] = []
    job = d.run([Task("a", forever(observed))], listeners=[events.append])
    time.sleep(0.1)
    cancelled = time.monotonic()
    assert job.cancel() is True
    result = job.get(timeout=WAIT)
    assert result.state is JobState.CANCELLED
    assert wait_for(lambda: observed.cancelled_at is not None)
    assert observed.cancelled_at is not None
    assert observed.cancelled_at - cancelled < 0.5
    assert job.wait_for_listeners(WAIT)
    last_task_event = [e for e in events if isinstance(e, TaskEvent)][-1]
    assert last_task_event.new_state is TaskState.CANCELLED


def test_an_async_task_that_raises_is_retried() -> None:
    calls: list[int] = []

    async def flaky(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise ValueError("first")
        return {"ok": len(calls)}

    result = d.run([Task("a", flaky)]).get(timeout=WAIT)
    assert result.ok
    assert result.ctx == {"ok": 2}


def test_an_async_task_raising_system_exit_fails_only_its_attempt() -> None:
    async def sleeper(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return {"slept": True}

    async def exits(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        sys.exit(3)

    bystander = d.run([Task("sleep", sleeper)])
    exiting = d.run([Task("exit", exits, max_retries=0)])
    result = exiting.get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, SystemExit)
    assert bystander.get(timeout=WAIT).ctx == {"slept": True}
    assert d.run([Task("after", sleeper)]).get(timeout=WAIT).ok  # the loop lives on


def test_a_function_returning_a_coroutine_runs_it_on_the_loop() -> None:
    async def body() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"from": threading.current_thread().name}

    def wrapper(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> Any:
        return body()

    result = d.run([Task("a", wrapper)]).get(timeout=WAIT)
    assert result.ok
    assert result.ctx["from"].startswith("daguerreo-loop")


def test_async_tasks_ignore_a_process_executor_and_still_cancel(
    processes: ProcessPoolExecutor,
) -> None:
    observed = Observed()
    started = time.monotonic()
    job = d.run([Task("a", forever(observed), timeout=0.1, max_retries=0)], executor=processes)
    assert job.get(timeout=WAIT).failure_reason is TaskState.TIMED_OUT
    assert wait_for(lambda: observed.cancelled_at is not None)
    assert (observed.cancelled_at or math.inf) - started < 0.1 + 0.5
