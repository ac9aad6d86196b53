"""A 50-task random DAG with side effects, for the journal's crash tests.

Run as a script: ``python journal_tasks.py JOURNAL SIDE RESULT RUN run|resume``.
Every task appends ``"<task> <RUN>"`` to SIDE (its side effect), sleeps a
little and returns a value computed from its dependencies' values only, so
the final ctx of any sequence of crashed and resumed runs must equal an
uninterrupted run's. The finished job's ctx goes to RESULT as JSON.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import daguerreo_actors as d

SIZE = 50
SEED = 1234


def _task_fn(name: str, deps: list[str], index: int, pause: float) -> Callable[..., Any]:
    def fn(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        with open(ctx["side"], "a", encoding="utf-8") as side:
            side.write(f"{name} {ctx['run']}\n")
        time.sleep(pause)
        value = (sum(ctx[dep] for dep in deps) * 31 + index) % 1_000_003
        return {name: value}

    fn.__qualname__ = f"task_{name}"
    return fn


def dag(size: int = SIZE, seed: int = SEED) -> list[d.Task]:
    rng = random.Random(seed)
    tasks = []
    for i in range(size):
        name = f"t{i:02d}"
        earlier = [f"t{j:02d}" for j in range(i)]
        deps = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3)))
        pause = rng.uniform(0.003, 0.02)
        tasks.append(d.Task(name, _task_fn(name, deps, i, pause), deps, max_retries=0))
    return tasks


def values(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The tasks' outputs of a final ctx (without the side-effect bookkeeping)."""
    return {k: v for k, v in ctx.items() if k not in ("side", "run")}


def main(journal: str, side: str, result: str, run: int, mode: str) -> None:
    ctx = {"side": side, "run": run}
    options: dict[str, Any] = {"ctx": ctx, "journal": journal, "max_concurrency": 4}
    if mode == "run":
        job = d.run(dag(), **options)
    else:
        try:
            job = d.resume(dag(), **options)
        except d.JournalError:
            # The last run completed but was killed before writing RESULT:
            # resuming that completed job restores every output.
            with d.Journal(journal) as opened:
                last = opened.jobs()[-1].job_id
            job = d.resume(dag(), job_id=last, **options)
    outcome = job.get(timeout=60)
    job.wait_for_listeners(timeout=10)
    # Written whole or not at all: a kill -9 between creating the file and
    # writing it left an empty file, which the test read as the outcome.
    partial = Path(result + ".partial")
    partial.write_text(json.dumps({"state": outcome.state.value, "ctx": values(outcome.ctx)}))
    os.replace(partial, result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
