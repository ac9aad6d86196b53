"""Daguerreo's generative test, reproducible: random DAGs through the real engine.

Hypothesis draws the shape (size, seed of the DAG, failure and sleep rates,
retries, concurrency, timeouts); a falsifying example is printed with its
seed and replays exactly. The invariants are checked from the event stream
each job reports to a listener.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobState, TaskEvent, TaskState
from daguerreo_actors._states import TASK_TRANSITIONS, TERMINAL_TASK_STATES


@dataclass
class Shape:
    n: int
    seed: int
    fail_rate: float
    sleep_rate: float
    timeout_rate: float
    max_retries: int
    max_concurrency: int
    job_timeout: float | None


@dataclass
class Observed:
    """What the task functions saw, written from worker threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    missing_deps: list[tuple[str, str]] = field(default_factory=list)
    late_tokens: set[int] = field(default_factory=set)
    tokens: itertools.count[int] = field(default_factory=itertools.count)


def build(shape: Shape, observed: Observed) -> tuple[list[d.Task], dict[str, frozenset[str]]]:
    rnd = random.Random(shape.seed)
    tasks: list[d.Task] = []
    deps_of: dict[str, frozenset[str]] = {}
    for i in range(shape.n):
        picks = rnd.randint(0, min(5, i))
        deps_of[f"t{i}"] = frozenset(f"t{rnd.randrange(i)}" for _ in range(picks))
    has_dependents = {dep for deps in deps_of.values() for dep in deps}
    for i in range(shape.n):
        name = f"t{i}"
        deps = deps_of[name]
        fails = rnd.random() < shape.fail_rate
        sleeps = rnd.random() < shape.sleep_rate
        timed = rnd.random() < shape.timeout_rate
        fn = make_fn(name, deps, fails, sleeps, timed, rnd.randrange(2**32), observed)
        optional = name not in has_dependents and rnd.random() < 0.3
        tasks.append(
            d.Task(name, fn, deps, timeout=0.01 if timed else None, continue_on_failure=optional)
        )
    return tasks, deps_of


def make_fn(
    name: str,
    deps: frozenset[str],
    fails: bool,
    sleeps: bool,
    timed: bool,
    seed: int,
    observed: Observed,
) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    rnd = random.Random(seed)
    lock = threading.Lock()

    def fn(ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        with lock:
            raise_now = fails and rnd.random() < 0.5
            pause = rnd.random() * 0.003 if sleeps else 0.0
            overrun = timed and rnd.random() < 0.5
        for dep in deps:
            if dep not in ctx:
                with observed.lock:
                    observed.missing_deps.append((name, dep))
        if pause:
            time.sleep(pause)
        if overrun:
            # Outlive the 10 ms timeout, then return a late result.
            time.sleep(0.03)
        if raise_now:
            raise ValueError(f"{name} failed on purpose")
        with observed.lock:
            token = next(observed.tokens)
            if not is_active():
                observed.late_tokens.add(token)
        return {name: token}

    return fn


shapes = st.builds(
    Shape,
    n=st.integers(1, 1000),
    seed=st.integers(0, 2**32 - 1),
    fail_rate=st.sampled_from([0.0, 0.05, 0.2]),
    sleep_rate=st.sampled_from([0.0, 0.02, 0.1]),
    timeout_rate=st.sampled_from([0.0, 0.0, 0.01]),
    max_retries=st.integers(0, 3),
    max_concurrency=st.integers(1, 8),
    job_timeout=st.sampled_from([None, None, None, 0.05, 0.3]),
)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes)
def test_random_dags_keep_every_invariant(shape: Shape) -> None:
    observed = Observed()
    tasks, deps_of = build(shape, observed)
    events: list[d.Event] = []
    started = time.monotonic()
    job = d.run(
        tasks,
        max_retries=shape.max_retries,
        max_concurrency=shape.max_concurrency,
        listeners=[events.append],
        timeout=shape.job_timeout,
    )
    result = job.get(timeout=60)  # the job always ends
    elapsed = time.monotonic() - started
    assert job.wait_for_listeners(10)
    if shape.job_timeout is None:
        assert result.state in (JobState.COMPLETED, JobState.FAILED)
    else:
        assert elapsed <= shape.job_timeout + 1.0

    assert isinstance(events[0], JobEvent)
    assert (events[0].old_state, events[0].new_state) == (JobState.IDLE, JobState.RUNNING)
    assert isinstance(events[-1], JobEvent)
    assert events[-1].new_state is result.state

    last: dict[str, TaskState] = {}
    terminal_count: dict[str, int] = dict.fromkeys(deps_of, 0)
    completed_attempt: dict[str, int] = {}
    running = 0
    for event in events[1:-1]:
        assert isinstance(event, TaskEvent)
        previous = last.get(event.task, TaskState.UNSCHEDULED)
        assert event.old_state is previous, event
        assert (event.old_state, event.new_state) in TASK_TRANSITIONS, event
        last[event.task] = event.new_state
        if event.new_state in TERMINAL_TASK_STATES:
            terminal_count[event.task] += 1
        if event.new_state is TaskState.RUNNING:
            running += 1
            assert running <= shape.max_concurrency
            for dep in deps_of[event.task]:
                assert last.get(dep) is TaskState.COMPLETED, (event.task, dep)
        elif event.old_state is TaskState.RUNNING:
            running -= 1
        if event.new_state is TaskState.COMPLETED:
            completed_attempt[event.task] = event.attempt
        assert event.attempt <= shape.max_retries + 1

    assert all(count == 1 for count in terminal_count.values()), terminal_count
    assert result.task_states == last
    assert all(a <= shape.max_retries + 1 for a in result.attempts.values())
    assert observed.missing_deps == []
    completed = {name for name, state in last.items() if state is TaskState.COMPLETED}
    assert set(result.ctx) == completed
    assert not observed.late_tokens & set(result.ctx.values())
    if result.state is JobState.COMPLETED:
        optional = {t.name for t in tasks if t.continue_on_failure}
        assert set(deps_of) - completed <= optional
        assert all(last[name] is TaskState.FAILED for name in set(deps_of) - completed)
    elif result.state is JobState.FAILED:
        assert result.failed_task is not None
        assert last[result.failed_task] in (TaskState.FAILED, TaskState.INVALID_RESULT)
