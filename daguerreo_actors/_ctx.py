"""The job's ctx as tasks see it, and who wrote each key.

A :class:`CtxBook` is immutable: the ctx snapshot (a HAMT, ``immutables.Map``:
handing it to a starting task is O(1), merging a result O(k log n), never a
copy of the whole ctx) and, unless conflicts are ignored, a second HAMT from
each key a task wrote to the node that wrote it last. The JobActor holds the
current book and swaps it under its lock (``_commit.py``); :meth:`merged`
does the work that runs user code (a key's ``__hash__`` and ``__eq__``) on
the reporting task's thread, before the lock is taken.

A *conflict* is a key written by two completed tasks neither of which
depends on the other (directly or transitively): which value wins would
depend on thread timing. A chain that overwrites a key (a task rewriting
its dependency's output) is no conflict, nor is overwriting the initial
ctx. Detecting them costs one more HAMT update per result (about 0.6 µs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import immutables

if TYPE_CHECKING:
    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._graph import Graph

#: The ``on_conflict`` values ``run`` accepts.
ON_CONFLICT = ("warn", "error", "ignore")


class CtxBook:
    """The ctx snapshot and its writers; see the module docstring."""

    __slots__ = ("commits", "snapshot", "writers")

    def __init__(
        self,
        snapshot: immutables.Map[Any, Any],
        writers: immutables.Map[Any, int] | None,
        commits: int = 0,
    ) -> None:
        self.snapshot = snapshot
        self.writers = writers
        #: How many non-empty outputs were merged into it: the Dask tier's
        #: ctx log (``_dask_ctx.py``) rebuilds a snapshot from this many entries.
        self.commits = commits

    @classmethod
    def initial(cls, ctx: Mapping[Any, Any], *, track_writers: bool) -> CtxBook:
        return cls(immutables.Map(ctx), immutables.Map() if track_writers else None)

    def merged(
        self, output: Mapping[Any, Any], node: int, graph: Graph
    ) -> tuple[CtxBook, list[tuple[Any, int]]]:
        """This book with ``output`` merged, and the (key, earlier writer) conflicts.

        Runs the keys' ``__hash__``/``__eq__``: whatever they raise is the
        caller's task's, and nothing is merged.
        """
        if not output:
            return self, []
        snapshot = self.snapshot.update(output)
        writers = self.writers
        if writers is None:
            return CtxBook(snapshot, None, self.commits + 1), []
        conflicts = []
        for key in output:
            earlier = writers.get(key)
            if earlier is not None and earlier != node and not depends_on(graph, node, earlier):
                conflicts.append((key, earlier))
        writers = writers.update(dict.fromkeys(output, node))
        return CtxBook(snapshot, writers, self.commits + 1), conflicts


class CommitLog(Protocol):
    """Told of every output merged into the book, in merge order, under the job's lock
    (the Dask tier's ctx log, ``_dask_ctx.py``); never runs user code."""

    def committed(self, output: Mapping[Any, Any], attempt: Attempt | None) -> None: ...


def restored_ctx(
    ctx: Mapping[Any, Any], restored: tuple[tuple[int, Mapping[Any, Any]], ...]
) -> Mapping[Any, Any]:
    """The initial ctx with a resumed job's restored outputs merged, in their order."""
    if not restored:
        return ctx
    merged = dict(ctx)
    for _node, output in restored:
        merged.update(output)
    return merged


def depends_on(graph: Graph, node: int, other: int) -> bool:
    """True if ``node`` depends on ``other``, directly or through others."""
    dependencies = graph.dependencies
    direct = dependencies[node]
    if other in direct:
        return True  # the common case: a task rewriting its dependency's key
    seen = set(direct)
    stack = list(direct)
    while stack:
        for dep in dependencies[stack.pop()]:
            if dep == other:
                return True
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False
