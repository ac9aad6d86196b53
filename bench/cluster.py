"""The Dask tier against Dask itself: 1,000 no-op tasks on a 2-worker LocalCluster.

Issue 17's figure: per-task cost of ``run(tasks, executor=client,
max_concurrency=8)`` against ``client.get`` of the same graph, on wide,
chain and random, interleaved repetitions, medians with their spread. Run
in a process of its own (``python -m bench.cluster --json``): a cluster's
worker processes and threads must not share the suite's process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHAPES = ("wide", "chain", "random")
ROOT = Path(__file__).resolve().parent.parent


def measure(n: int, reps: int) -> dict[str, dict[str, list[float]]]:
    import distributed

    import daguerreo_actors as d
    from bench import shapes
    from bench.engines import _dask_graph, functions

    out: dict[str, dict[str, list[float]]] = {}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        for shape in SHAPES:
            spec = shapes.build(shape, n)
            fns = functions(spec, "noop")
            tasks = [d.Task(name, fns[name], deps) for name, deps in spec]
            graph, keys = _dask_graph(spec, "noop")
            times: dict[str, list[float]] = {"ours": [], "client.get": []}
            for rep in range(reps):
                order = ("ours", "client.get") if rep % 2 == 0 else ("client.get", "ours")
                for engine in order:
                    started = time.perf_counter()
                    if engine == "ours":
                        result = d.run(tasks, executor=client, max_concurrency=8).get(timeout=900)
                        assert result.ok, result.state
                    else:
                        client.get(graph, keys)
                    times[engine].append((time.perf_counter() - started) / n * 1e6)
            out[shape] = times
    return out


def in_subprocess(n: int = 1_000, reps: int = 3) -> dict[str, dict[str, list[float]]] | None:
    """The figures from a fresh process; None if it failed (no dask, say)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--json", "-n", str(n), "--reps", str(reps)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    data: dict[str, dict[str, list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def report_lines(
    found: dict[str, dict[str, list[float]]] | None, n: int = 1_000
) -> tuple[list[str], list[tuple[str, bool, str]]]:
    if found is None:
        return [], [("Dask tier at 1,000 tasks <= 1.5x client.get", False, "not measured")]

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    lines = [
        f"The Dask tier: {n:,} no-op tasks on a `LocalCluster` (2 worker processes, 1 thread "
        "each), `run(tasks, executor=client, max_concurrency=8)` against `client.get` of the "
        "same graph, interleaved, µs per task, median (min-max):",
        "",
        "| shape | ours | `client.get` | ratio |",
        "|---|---|---|---|",
    ]
    checks: list[tuple[str, bool, str]] = []
    for shape, times in found.items():
        ratio = statistics.median(times["ours"]) / statistics.median(times["client.get"])
        lines.append(
            f"| {shape} | {spread(times['ours'])} | {spread(times['client.get'])} | x{ratio:.2f} |"
        )
        checks.append(
            (f"Dask tier, {n:,} {shape}: <= 1.5x client.get", ratio <= 1.5, f"x{ratio:.2f}")
        )
    lines.append("")
    return lines, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    from bench.run import configure_typical_logging

    configure_typical_logging()
    found = measure(args.n, args.reps)
    if args.json:
        print(json.dumps(found))
    else:
        print("\n".join(report_lines(found, args.n)[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
