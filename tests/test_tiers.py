"""The process tier and async task functions, run for real."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tier_tasks

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


def test_a_function_returning_a_coroutine_runs_it_on_the_loop() -> None:
    async def body() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"from": threading.current_thread().name}

    def wrapper(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> Any:
        return body()

    result = d.run([Task("a", wrapper)]).get(timeout=WAIT)
    assert result.ok
    assert result.ctx["from"].startswith("daguerreo-loop")


def test_async_tasks_ignore_a_thread_executor_and_still_cancel(
    processes: ProcessPoolExecutor,
) -> None:
    observed = Observed()
    started = time.monotonic()
    job = d.run([Task("a", forever(observed), timeout=0.1, max_retries=0)], executor=processes)
    assert job.get(timeout=WAIT).failure_reason is TaskState.TIMED_OUT
    assert wait_for(lambda: observed.cancelled_at is not None)
    assert (observed.cancelled_at or math.inf) - started < 0.1 + 0.5
