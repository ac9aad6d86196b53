"""A crash, then a resume: nine of ten fetches survive a kill -9.

Run ``python examples/durable.py [JOURNAL]``. It starts the pipeline in a
child process, kills it (SIGKILL) once some fetches are done, then resumes
the job here: the fetches the journal recorded are restored, not run again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import daguerreo_actors as d

STATIONS = [f"station-{i}" for i in range(10)]


def fetch(station: str) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    def fn(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        time.sleep(0.2)  # a slow API
        sys.stdout.write(f"fetched {station}\n")  # one write: lines never interleave
        sys.stdout.flush()
        return {station: len(station) * 10}

    fn.__qualname__ = f"fetch_{station}"  # one fingerprint per fetch
    return fn


def total(ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {"total": sum(ctx[s] for s in STATIONS)}


TASKS = [d.Task(s, fetch(s)) for s in STATIONS] + [d.Task("total", total, STATIONS)]


def main() -> None:
    journal = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "pipe.db"
    if os.environ.get("DURABLE_CHILD"):
        d.run(TASKS, journal=journal, max_concurrency=3).get(timeout=60)
        return
    env = {**os.environ, "DURABLE_CHILD": "1"}
    child = subprocess.Popen(
        [sys.executable, __file__, str(journal)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    for _ in range(6):  # six fetches are done (their outputs a moment later)
        print(child.stdout.readline(), end="", flush=True)
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    print("--- killed; resuming ---", flush=True)
    job = d.resume(TASKS, journal=journal, max_concurrency=3)
    result = job.get(timeout=60)
    print(f"state: {result.state.value}, total: {result.ctx['total']}")
    again = sum(result.attempts[s] for s in STATIONS)
    print(f"restored: {len(STATIONS) - again} fetches; fetched again: {again} of {len(STATIONS)}")


if __name__ == "__main__":
    main()
