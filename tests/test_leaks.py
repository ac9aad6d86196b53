"""Nothing of the engine outlives its jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from conftest import engine_actors, engine_threads, wait_until

import daguerreo_actors as d
from daguerreo_actors import _pool


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("daguerreo-worker")]


def step(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {"n": ctx.get("n", 0) + 1}


def flaky_once() -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    calls = []

    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return {"flaky": len(calls)}

    return fn


def test_after_200_jobs_in_a_row_nothing_is_left_within_5_seconds() -> None:
    for i in range(200):
        tasks = [
            d.Task("a", step),
            d.Task("b", step, ["a"], timeout=5.0),
            d.Task("c", flaky_once(), ["a"]),
            d.Task("d", step, ["b", "c"]),
        ]
        events: list[d.Event] = []
        job = d.run(tasks, listeners=[events.append] if i % 2 else (), timeout=30)
        assert job.get(timeout=10).ok
    ended = time.monotonic()
    assert wait_until(
        lambda: not engine_threads() and not engine_actors() and not pool_threads(), 5.0
    ), (engine_threads(), engine_actors(), pool_threads())
    assert time.monotonic() - ended < 5.0
    pool = _pool.shared_pool()
    assert pool.thread_count == 0


def test_cancelled_and_timed_out_jobs_leave_nothing_behind() -> None:
    def polite(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        while is_active():
            time.sleep(0.002)
        return {}

    for i in range(20):
        tasks = [d.Task(f"t{k}", polite) for k in range(4)]
        job = d.run(tasks, max_concurrency=2, timeout=0.02 if i % 2 else None)
        if not i % 2:
            job.cancel()
        assert job.get(timeout=10).state in (d.JobState.CANCELLED, d.JobState.TIMED_OUT)
    assert wait_until(
        lambda: not engine_threads() and not engine_actors() and not pool_threads(), 5.0
    ), (engine_threads(), engine_actors(), pool_threads())
