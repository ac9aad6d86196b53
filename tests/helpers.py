"""Helpers shared by several test modules (pytest puts this directory on sys.path).

The first part serves the engine's end-to-end tests; the second drives the
scheduler core (``_scheduler.Scheduler``) by hand, as the JobActor does,
for the ``test_scheduler_*.py`` modules.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from daguerreo_actors._graph import Graph
from daguerreo_actors._scheduler import Scheduler, Transition
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._task import Task
from daguerreo_actors._validation import build_graph

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0  # deadline for anything that should finish quickly
Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]

# What must never reach a terminal raw from a name or message: C0/C1
# controls (ESC, BEL, CR...), format characters (bidi overrides), line and
# paragraph separators, lone surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def unsafe_chars(text: str) -> list[str]:
    """The characters of ``text`` that must not be printed raw (newlines between lines aside)."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE_CATEGORIES]


# -- task functions -------------------------------------------------------------


def noop(ctx: Mapping[Any, Any], is_active: Callable[[], bool]) -> Mapping[Any, Any]:
    return {}


def fails_once() -> Callable[[Ctx, IsActive], dict[str, Any]]:
    calls: list[int] = []

    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("first\nattempt")
        return {"ok": True}

    return fn


# -- the scheduler core, driven by hand -------------------------------------------

UNSCHEDULED = TaskState.UNSCHEDULED
READY = TaskState.READY
RUNNING = TaskState.RUNNING
COMPLETED = TaskState.COMPLETED
EXCEPTION = TaskState.EXCEPTION
TIMED_OUT = TaskState.TIMED_OUT
INVALID_RESULT = TaskState.INVALID_RESULT
FAILED = TaskState.FAILED
CANCELLED = TaskState.CANCELLED
SKIPPED = TaskState.SKIPPED
UPSTREAM_FAILED = TaskState.UPSTREAM_FAILED


def never_called(ctx: Mapping[Any, Any], is_active: Callable[[], bool]) -> Mapping[Any, Any]:
    raise AssertionError("the scheduler core never calls a task function")


def graph_of(spec: Sequence[tuple[str, Sequence[str]]]) -> Graph:
    """A validated graph from ``[(name, [dependency names]), ...]``."""
    _, graph = build_graph([Task(name, never_called, frozenset(deps)) for name, deps in spec])
    return graph


def chain(*names: str) -> Graph:
    return graph_of([(name, [names[i - 1]] if i else []) for i, name in enumerate(names)])


def independent(*names: str) -> Graph:
    return graph_of([(name, []) for name in names])


def scheduler(
    graph: Graph,
    *,
    max_concurrency: int = 10,
    max_retries: int | Sequence[int] = 0,
    continue_on_failure: bool | Sequence[bool] = False,
    ctx: Mapping[Any, Any] | None = None,
    record: bool = True,
    decide_end: Callable[[JobState], JobState] | None = None,
    revoke: Callable[[int], bool] | None = None,
) -> Scheduler:
    n = len(graph)
    return Scheduler(
        graph,
        max_concurrency=max_concurrency,
        max_retries=[max_retries] * n if isinstance(max_retries, int) else max_retries,
        continue_on_failure=(
            [continue_on_failure] * n
            if isinstance(continue_on_failure, bool)
            else continue_on_failure
        ),
        ctx=ctx,
        record=record,
        decide_end=decide_end,
        revoke=revoke,
    )


def node(sched: Scheduler, name: str) -> int:
    return sched.graph.names.index(name)


def fields(t: Transition) -> tuple[int, TaskState, TaskState, int]:
    """A transition record as (node, old, new, attempt)."""
    return t.node, t.old, t.new, t.attempt


def steps(sched: Scheduler) -> list[tuple[str, str]]:
    """The transitions recorded since the last call, as (task, new state)."""
    names = sched.graph.names
    return [(names[t.node], t.new.value) for t in sched.take_transitions()]


def steps_with_attempts(sched: Scheduler) -> list[tuple[str, str, str, int]]:
    """The transitions recorded since the last call, as (task, old, new, attempt)."""
    names = sched.graph.names
    return [
        (names[n], old.value, new.value, attempt)
        for n, old, new, attempt in map(fields, sched.take_transitions())
    ]


def names(sched: Scheduler, nodes: Sequence[int] | None) -> list[str] | None:
    return None if nodes is None else [sched.graph.names[n] for n in nodes]


def complete(sched: Scheduler, name: str, result: Mapping[Any, Any] | None = None) -> list[str]:
    n = node(sched, name)
    started = sched.completed(n, sched.attempts[n], {} if result is None else result)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def fail(
    sched: Scheduler, name: str, exc: BaseException | None = None, *, retry: bool = False
) -> list[str]:
    n = node(sched, name)
    started = sched.failed(n, sched.attempts[n], exc or ValueError(name), retry)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def time_out(sched: Scheduler, name: str, *, retry: bool = False) -> list[str]:
    n = node(sched, name)
    started = sched.timed_out(n, sched.attempts[n], retry)
    assert started is not None, f"{name} was not running"
    return [sched.graph.names[m] for m in started]


def state_of(sched: Scheduler) -> dict[str, str]:
    return {name: state.value for name, state in zip(sched.graph.names, sched.states, strict=True)}


def job_steps(sched: Scheduler) -> list[tuple[str, str]]:
    return [(old.value, new.value) for _pos, old, new in sched.take_job_transitions()]


def failed_node(sched: Scheduler) -> int | None:
    """The node whose failure failed the job (None if none did)."""
    failure = sched.failure
    if failure is None or failure.task is None:
        return None
    return sched.graph.names.index(failure.task)


def failure_reason(sched: Scheduler) -> TaskState | None:
    return None if sched.failure is None else sched.failure.reason


def job_exception(sched: Scheduler) -> BaseException | None:
    return None if sched.failure is None else sched.failure.exception


def invalid_value(sched: Scheduler) -> Any:
    return None if sched.failure is None else sched.failure.invalid_result
