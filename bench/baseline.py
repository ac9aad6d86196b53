"""The practical floor: a minimal scheduler on graphlib and a ThreadPoolExecutor.

No retries, no timeouts, no events, no snapshots: ready nodes are submitted
as soon as graphlib releases them, results are merged into one shared dict.
Anything a real engine does costs on top of this.
"""

from __future__ import annotations

import graphlib
import queue
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Fn = Callable[[Mapping[str, Any], Callable[[], bool]], Mapping[str, Any]]


def _active() -> bool:
    return True


def run_graphlib(
    spec: list[tuple[str, tuple[str, ...]]], fns: Mapping[str, Fn], workers: int
) -> dict[str, Any]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name, deps in spec:
        sorter.add(name, *deps)
    sorter.prepare()
    ctx: dict[str, Any] = {}
    done: queue.SimpleQueue[tuple[str, Future[Mapping[str, Any]]]] = queue.SimpleQueue()
    with ThreadPoolExecutor(workers) as executor:
        while sorter.is_active():
            for name in sorter.get_ready():
                future = executor.submit(fns[name], ctx, _active)
                future.add_done_callback(lambda f, name=name: done.put((name, f)))
            name, future = done.get()
            ctx.update(future.result())
            sorter.done(name)
            while True:  # drain whatever else finished meanwhile
                try:
                    name, future = done.get_nowait()
                except queue.Empty:
                    break
                ctx.update(future.result())
                sorter.done(name)
    return ctx
