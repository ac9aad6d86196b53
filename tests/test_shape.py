"""The engine's shape: one clock, tiers behind one seam, small modules, bounded TaskActors."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import daguerreo_actors as d
from daguerreo_actors import Task, TaskState
from daguerreo_actors._offers import OFFERS_PER_SLOT

PACKAGE = Path(d.__file__).resolve().parent
WAIT = 30.0


def modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_clock_module_reads_the_system_clock() -> None:
    reads = re.compile(
        r"\btime\.(monotonic|time|perf_counter|monotonic_ns|time_ns|perf_counter_ns)\b"
        r"|\bfrom time import\b|\bdatetime\.(now|utcnow|today)\b|\bloop\.time\(\)"
    )
    offenders = [
        f"{path.name}:{number}"
        for path in modules()
        if path.name != "_clock.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line)
    ]
    assert offenders == []
    assert reads.search((PACKAGE / "_clock.py").read_text())  # the pattern does match


def test_no_tier_module_imports_the_task_actor() -> None:
    tiers = [p for p in modules() if p.name.startswith("_tier")]
    assert {p.name for p in tiers} >= {
        "_tiers.py",
        "_tier_thread.py",
        "_tier_executor.py",
        "_tier_process.py",
        "_tier_dask.py",
        "_tier_async.py",
    }
    for path in tiers:
        imports = imported_modules(path)
        assert "daguerreo_actors._task_actor" not in imports, path.name
        assert "daguerreo_actors._job_actor" not in imports, path.name


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_no_module_is_over_450_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 450


def noop(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("concurrency", [2, 8])
def test_live_task_actors_stay_within_their_bound_on_a_ten_thousand_task_wide_dag(
    concurrency: int,
) -> None:
    tasks = [Task(f"t{i}", noop) for i in range(10_000)]
    job = d.run(tasks, max_concurrency=concurrency)
    assert job.get(timeout=WAIT).ok
    bound = concurrency * (OFFERS_PER_SLOT + 1)
    peak = job._actor.peak_task_actors
    assert 0 < peak <= bound
    # Offers are published at all (the bound is not trivially far away).
    assert peak > concurrency


def returns_an_exception(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> Any:
    return ValueError("a value, not a raise")


def test_a_task_returning_an_exception_instance_is_an_invalid_result_with_that_value(
    logs: list[dict[str, Any]],
) -> None:
    events: list[d.Event] = []
    job = d.run([Task("a", returns_an_exception)], listeners=[events.append])
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is d.JobState.FAILED
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert isinstance(result.invalid_result, ValueError)
    assert result.exception is None
    [event] = [
        e for e in events if isinstance(e, d.TaskEvent) and e.new_state is TaskState.INVALID_RESULT
    ]
    assert isinstance(event.result, ValueError)
    assert event.exception is None
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert entry["result_type"] == "ValueError"
    assert "error_type" not in entry  # nothing was raised
