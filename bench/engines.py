"""The engines the benchmark compares, each run on the same DAG spec.

Every engine gets the same task functions in its own calling convention:
``noop`` returns an empty mapping, ``newkey`` returns a mapping with one new
key per task (so any per-task cost that grows with the context shows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import daguerreo_actors as d
from bench.baseline import run_graphlib

Spec = list[tuple[str, tuple[str, ...]]]
Runner = Callable[[], Any]

KINDS = ("noop", "newkey")


def _noop(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {}


def _newkey_fn(name: str) -> Callable[[Mapping[str, Any], Callable[[], bool]], dict[str, Any]]:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        return {name: 1}

    return fn


def _dask_noop(*_deps: Any) -> dict[str, Any]:
    return {}


def _dask_newkey(name: str) -> Callable[..., dict[str, Any]]:
    def fn(*_deps: Any) -> dict[str, Any]:
        return {name: 1}

    return fn


def functions(spec: Spec, kind: str) -> dict[str, Callable[..., Any]]:
    if kind == "noop":
        return {name: _noop for name, _ in spec}
    return {name: _newkey_fn(name) for name, _ in spec}


def ours(spec: Spec, kind: str, concurrency: int) -> Runner:
    fns = functions(spec, kind)
    tasks = [d.Task(name, fns[name], deps) for name, deps in spec]

    def run() -> Any:
        result = d.run(tasks, max_concurrency=concurrency).get(timeout=600)
        assert result.ok, result.state
        return result

    return run


def graphlib_baseline(spec: Spec, kind: str, concurrency: int) -> Runner:
    fns = functions(spec, kind)
    return lambda: run_graphlib(spec, fns, concurrency)


def _dask_graph(spec: Spec, kind: str) -> tuple[dict[str, Any], list[str]]:
    graph: dict[str, Any] = {}
    for name, deps in spec:
        fn = _dask_noop if kind == "noop" else _dask_newkey(name)
        graph[name] = (fn, *deps)
    return graph, [name for name, _ in spec]


def dask_threaded(spec: Spec, kind: str, concurrency: int) -> Runner:
    import dask.threaded

    graph, keys = _dask_graph(spec, kind)
    return lambda: dask.threaded.get(graph, keys, num_workers=concurrency)


def dask_sync(spec: Spec, kind: str, _concurrency: int) -> Runner:
    import dask.local

    graph, keys = _dask_graph(spec, kind)
    return lambda: dask.local.get_sync(graph, keys)


ENGINES: dict[str, Callable[[Spec, str, int], Runner]] = {
    "daguerreo_actors": ours,
    "graphlib": graphlib_baseline,
    "dask.threaded": dask_threaded,
    "dask.get_sync": dask_sync,
}
