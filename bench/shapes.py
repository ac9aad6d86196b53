"""The DAG shapes the benchmark runs, as (name, dependencies) lists in topological order."""

from __future__ import annotations

import random

Spec = list[tuple[str, tuple[str, ...]]]

SHAPES = ("wide", "chain", "random", "fan")


def wide(n: int) -> Spec:
    """N independent tasks."""
    return [(f"t{i}", ()) for i in range(n)]


def chain(n: int) -> Spec:
    """N tasks in sequence."""
    return [(f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(n)]


def random_dag(n: int, seed: int = 42) -> Spec:
    """Each node depends on up to 5 earlier nodes (fixed seed)."""
    rnd = random.Random(seed)
    spec: Spec = []
    for i in range(n):
        picks = rnd.randint(0, min(5, i))
        spec.append((f"t{i}", tuple(sorted({f"t{rnd.randrange(i)}" for _ in range(picks)}))))
    return spec


def fan(n: int) -> Spec:
    """1 -> N -> 1: a source, N middle tasks, a sink."""
    middle = [(f"m{i}", ("source",)) for i in range(n - 2)]
    sink = ("sink", tuple(name for name, _ in middle))
    return [("source", ()), *middle, sink]


def build(shape: str, n: int) -> Spec:
    return {"wide": wide, "chain": chain, "random": random_dag, "fan": fan}[shape](n)
