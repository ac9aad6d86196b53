"""Load: many jobs in a row, many at once, one wide fan; nothing leaks, nothing mixes."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import engine_actors, wait_until

import daguerreo_actors as d
from daguerreo_actors import Task, TaskEvent, TaskState, _logwriter, _pool, _supervisor

WAIT = 30.0


def add(key: str) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        return {key: 1}

    return fn


def small_job_tasks() -> list[Task]:
    return [
        Task("a", add("a")),
        Task("b", add("b"), ["a"]),
        Task("c", add("c"), ["a"], timeout=30),
        Task("d", add("d"), ["b", "c"]),
    ]


def back_to_baseline(baseline: set[threading.Thread]) -> bool:
    # The shared threads linger for a second when idle; retire them now.
    pool = _pool._pool
    if pool is not None:
        pool.retire_idle()
    _supervisor.retire_idle()
    _logwriter.writer().retire_idle()
    if engine_actors():
        return False
    return not [t for t in threading.enumerate() if t not in baseline and t.is_alive()]


def test_a_thousand_jobs_in_a_row_leave_no_threads_actors_or_memory_behind() -> None:
    baseline = set(threading.enumerate())
    tasks = small_job_tasks()
    tracemalloc.start()
    try:
        for i in range(1000):
            job = d.run(tasks, listeners=[lambda _e: None] if i % 3 == 0 else ())
            assert job.get(timeout=WAIT).ok
            assert wait_until(lambda: back_to_baseline(baseline), 5.0), i
            if i == 99:
                gc.collect()
                at_100 = tracemalloc.get_traced_memory()[0]
        gc.collect()
        at_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = at_1000 - at_100
    assert growth < 5 * 2**20, f"memory grew {growth / 2**20:.2f} MB from job 100 to 1000"


def test_fifty_concurrent_jobs_from_eight_threads_never_see_each_others_keys() -> None:
    def job_tasks(job_number: int) -> list[Task]:
        mine = f"job{job_number}"

        def check(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
            foreign = [k for k in ctx if k.startswith("job") and not k.startswith(mine + ":")]
            return {f"{mine}:foreign": foreign}

        tasks = [Task(f"t{i}", add(f"{mine}:k{i}")) for i in range(20)]
        tasks.append(Task("check", check, [t.name for t in tasks]))
        return tasks

    def one(job_number: int) -> tuple[int, d.JobResult]:
        return job_number, d.run(job_tasks(job_number), ctx={}).get(timeout=WAIT)

    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(one, range(50)))
    assert len(results) == 50
    for job_number, result in results:
        mine = f"job{job_number}"
        assert result.ok
        assert result.ctx[f"{mine}:foreign"] == []
        assert all(key.startswith(mine + ":") for key in result.ctx)
        assert len(result.ctx) == 21


def test_a_fan_of_ten_thousand_tasks_feeds_the_sink_every_key_within_the_limit() -> None:
    seen: dict[str, int] = {}

    def sink(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        seen["keys"] = sum(1 for key in ctx if key.startswith("m"))
        return {}

    middle = [Task(f"m{i}", add(f"m{i}"), ["source"]) for i in range(10_000)]
    tasks = [Task("source", add("source")), *middle, Task("sink", sink, [t.name for t in middle])]
    running = 0
    peak = 0

    def count(event: d.Event) -> None:
        nonlocal running, peak
        if isinstance(event, TaskEvent):
            if event.new_state is TaskState.RUNNING:
                running += 1
                peak = max(peak, running)
            elif event.old_state is TaskState.RUNNING:
                running -= 1

    job = d.run(tasks, max_concurrency=4, listeners=[count])
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ok
    assert seen["keys"] == 10_000
    assert 1 <= peak <= 4


def test_many_jobs_without_offers_never_lose_a_kept_start() -> None:
    # Resources make the ready queue ranked (no offers): every start goes
    # through a drain that keeps the first one for its thread. A drain ending
    # while another began used to lose that start: the job hung on one task.
    n = 2_000
    tasks = [
        d.Task(f"t{i}", lambda _c, _a: {}, resources={("db", "gpu")[i % 2]: 1}) for i in range(n)
    ]
    for _ in range(30):
        job = d.run(tasks, max_concurrency=2, resources={"db": 8, "gpu": 8})
        assert job.get(timeout=20).ok
