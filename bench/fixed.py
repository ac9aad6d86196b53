"""What a job costs before its tasks do: a 1-task job, importing the engine, chains by concurrency.

- ``fixed_cost``: wall time of a whole 1-task (no-op) job, ours, the graphlib
  baseline and ``dask.threaded.get``, interleaved, in this process after a
  warm-up; the median of many jobs, with the spread (p10-p90).
- ``import_cost``: a fresh interpreter imports the engine and runs its first
  4-task job (a diamond); import and first job timed apart, several fresh
  processes per engine, interleaved; medians with the spread.
- ``chain_by_concurrency``: a 10k chain at concurrency 1, 2 and 8, ours and the
  baseline (and dask.threaded), interleaved.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import shapes
from bench.engines import ENGINES

_DIAMOND = [("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c"))]


def _spread(values: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90)."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return statistics.median(ordered), pick(0.1), pick(0.9)


def fixed_cost(jobs: int = 1500) -> dict[str, tuple[float, float, float]]:
    """µs per 1-task job: (median, p10, p90) per engine."""
    spec = [("only", ())]
    runners = {
        "daguerreo_actors": ENGINES["daguerreo_actors"](spec, "noop", 2),
        "graphlib": ENGINES["graphlib"](spec, "noop", 2),
        "dask.threaded": ENGINES["dask.threaded"](spec, "noop", 2),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(50):  # warm-up: pools, caches, first-use imports
        for runner in runners.values():
            runner()
    for _ in range(jobs):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner()
            times[name].append((time.perf_counter() - started) * 1e6)
    return {name: _spread(t) for name, t in times.items()}


_IMPORT_CODE = {
    "daguerreo_actors": (
        "import daguerreo_actors as d",
        "fn = lambda ctx, is_active: {}\n"
        "tasks = [d.Task(n, fn, deps) for n, deps in SPEC]\n"
        "assert d.run(tasks).get(timeout=60).ok",
    ),
    "graphlib": (
        "from bench.baseline import run_graphlib",
        "run_graphlib(SPEC, {n: (lambda ctx, a: {}) for n, _ in SPEC}, 2)",
    ),
    "dask.threaded": (
        "import dask.threaded",
        "graph = {n: (lambda *a: {}, *deps) for n, deps in SPEC}\n"
        "dask.threaded.get(graph, 'd', num_workers=2)",
    ),
}


def _import_once(engine: str) -> tuple[float, float]:
    imports, first_job = _IMPORT_CODE[engine]
    code = (
        "import time, sys, json\n"
        f"SPEC = {_DIAMOND!r}\n"
        "t0 = time.perf_counter()\n"
        f"{imports}\n"
        "t1 = time.perf_counter()\n"
        f"{first_job}\n"
        "t2 = time.perf_counter()\n"
        "print(json.dumps([(t1 - t0) * 1e3, (t2 - t1) * 1e3]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    imported, first = json.loads(done.stdout.strip().splitlines()[-1])
    return imported, first


def import_cost(runs: int = 7) -> dict[str, dict[str, tuple[float, float, float]]]:
    """ms of ``import`` and of the first 4-task job in a fresh process, per engine."""
    raw: dict[str, tuple[list[float], list[float]]] = {e: ([], []) for e in _IMPORT_CODE}
    for _ in range(runs):
        for engine in _IMPORT_CODE:
            imported, first = _import_once(engine)
            raw[engine][0].append(imported)
            raw[engine][1].append(first)
    return {
        engine: {"import": _spread(imports), "first_job": _spread(firsts)}
        for engine, (imports, firsts) in raw.items()
    }


def chain_by_concurrency(n: int = 10_000, reps: int = 5) -> dict[tuple[str, int], list[float]]:
    """µs per task of a chain at concurrency 1, 2, 8, per engine (all repetitions)."""
    spec = shapes.build("chain", n)
    configs = [
        (engine, conc)
        for conc in (1, 2, 8)
        for engine in ("daguerreo_actors", "graphlib", "dask.threaded")
    ]
    runners = {config: ENGINES[config[0]](spec, "noop", config[1]) for config in configs}
    times: dict[tuple[str, int], list[float]] = {config: [] for config in configs}
    for _ in range(reps):
        for config, runner in runners.items():
            started = time.perf_counter()
            runner()
            times[config].append((time.perf_counter() - started) / n * 1e6)
    return times


def report_lines(
    fixed: dict[str, tuple[float, float, float]],
    imports: dict[str, dict[str, tuple[float, float, float]]],
    chains: dict[tuple[str, int], list[float]],
) -> tuple[list[str], list[tuple[str, bool, str]]]:
    """Markdown lines and the issue's targets for these three measurements."""
    fmt = lambda s: f"{s[0]:.0f} ({s[1]:.0f}-{s[2]:.0f})"  # noqa: E731
    lines = [
        "## What a job costs before its tasks do",
        "",
        "Median (p10-p90). A 1-task no-op job, whole, in µs; import and the first",
        "4-task job of a fresh interpreter, in ms.",
        "",
        "| engine | 1-task job µs | import ms | first 4-task job ms |",
        "|---|---|---|---|",
    ]
    for engine in ("daguerreo_actors", "graphlib", "dask.threaded"):
        lines.append(
            f"| {engine} | {fmt(fixed[engine])} | {fmt(imports[engine]['import'])} "
            f"| {imports[engine]['first_job'][0]:.1f} |"
        )
    lines += [
        "",
        "Chain of 10,000 no-op tasks by concurrency, µs per task, median (min-max):",
        "",
        "| conc | ours | graphlib | dask.threaded | ours/base |",
        "|---|---|---|---|---|",
    ]
    checks: list[tuple[str, bool, str]] = []
    for conc in (1, 2, 8):
        cells = []
        medians = {}
        for engine in ("daguerreo_actors", "graphlib", "dask.threaded"):
            values = chains[(engine, conc)]
            medians[engine] = statistics.median(values)
            cells.append(f"{medians[engine]:.1f} ({min(values):.1f}-{max(values):.1f})")
        ratio = medians["daguerreo_actors"] / medians["graphlib"]
        lines.append(f"| {conc} | {' | '.join(cells)} | {ratio:.2f} |")
        if conc in (2, 8):
            checks.append(
                (f"chain 10k conc={conc}: ours <= 0.5x graphlib", ratio <= 0.5, f"{ratio:.2f}")
            )
    lines.append("")
    ours, dask = fixed["daguerreo_actors"][0], fixed["dask.threaded"][0]
    base = fixed["graphlib"][0]
    checks += [
        ("1-task job: ours <= dask.threaded", ours <= dask, f"{ours:.0f} vs {dask:.0f} µs"),
        ("1-task job (stretch): ours <= graphlib", ours <= base, f"{ours:.0f} vs {base:.0f} µs"),
        (
            "import: ours <= dask.threaded",
            imports["daguerreo_actors"]["import"][0] <= imports["dask.threaded"]["import"][0],
            f"{imports['daguerreo_actors']['import'][0]:.0f} vs "
            f"{imports['dask.threaded']['import'][0]:.0f} ms",
        ),
    ]
    return lines, checks


def run_all() -> dict[str, Any]:
    return {
        "fixed": fixed_cost(),
        "imports": import_cost(),
        "chains": chain_by_concurrency(),
    }
