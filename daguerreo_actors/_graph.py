"""The DAG as integer adjacency lists, and the cycle search.

Nodes are the positions of the tasks in the (validated) task list, so the
scheduler core works on plain lists indexed by int instead of dicts keyed by
name. Both the graph build and :func:`find_cycles` are iterative and linear in
nodes plus edges: a 100k-task chain must neither hit the recursion limit nor
go quadratic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True, slots=True)
class Graph:
    """A validated DAG: ``dependencies[i]`` and ``dependents[i]`` of node ``i``.

    Lists, grown only by :meth:`add_isolated` (a mapped task's children,
    ``_maps.py``): everything holding the graph sees the new nodes.
    """

    names: list[str]
    dependencies: list[tuple[int, ...]]
    dependents: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.names)

    def add_isolated(self, names: Sequence[str]) -> range:
        """Append nodes with no edges (a mapped task's children); their range."""
        first = len(self.names)
        self.names.extend(names)
        self.dependencies.extend([()] * len(names))
        self.dependents.extend([()] * len(names))
        return range(first, len(self.names))


def build_adjacency(
    dependencies: Sequence[Sequence[int]],
) -> tuple[tuple[int, ...], ...]:
    """Invert dependency lists into dependent lists, in node order."""
    dependents: list[list[int]] = [[] for _ in dependencies]
    for node, deps in enumerate(dependencies):
        for dep in deps:
            dependents[dep].append(node)
    return tuple(tuple(d) for d in dependents)


def find_cycles(
    edges: Sequence[Sequence[int]],
    reverse: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """One cycle per strongly connected component that has one.

    ``edges[i]`` lists the nodes ``i`` points to (``reverse``, its inverse,
    is built if not given). Each cycle is returned as a list of nodes
    starting and ending with the same node, starting at the component's
    lowest-numbered node, following edge direction.

    First peels the graph Kahn-style (a node whose edges all lead to peeled
    nodes is on no cycle): for a DAG, the common case, that is all there is.
    Tarjan's algorithm, with an explicit stack, runs only on what is left.
    """
    n = len(edges)
    if reverse is None:
        reverse = build_adjacency(edges)
    pending = [len(targets) for targets in edges]
    peel = [node for node in range(n) if pending[node] == 0]
    for node in peel:  # grows while iterating: a breadth-first peel
        for source in reverse[node]:
            pending[source] -= 1
            if pending[source] == 0:
                peel.append(source)
    if len(peel) == n:
        return []
    left = [count > 0 for count in pending]
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1 or not left[root]:
            continue
        # Each frame: (node, position of the next edge to look at).
        work: list[tuple[int, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            node, pos = work[-1]
            targets = edges[node]
            if pos < len(targets):
                work[-1] = (node, pos + 1)
                nxt = targets[pos]
                if not left[nxt]:
                    continue  # peeled: on no cycle
                if index[nxt] == -1:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack[nxt] = True
                    work.append((nxt, 0))
                elif on_stack[nxt] and index[nxt] < low[node]:
                    low[node] = index[nxt]
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[node] < low[parent]:
                    low[parent] = low[node]
            if low[node] == index[node]:
                component: list[int] = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    components.append(component)
    cycles = [_cycle_in(component, edges) for component in components]
    cycles.sort(key=lambda c: c[0])
    return cycles


def _cycle_in(component: list[int], edges: Sequence[Sequence[int]]) -> list[int]:
    """A shortest cycle through the component's lowest node (breadth first)."""
    members = set(component)
    start = min(component)
    parent: dict[int, int] = {}
    frontier = [start]
    while frontier:
        following: list[int] = []
        for node in frontier:
            for nxt in edges[node]:
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    path.reverse()
                    path.append(start)
                    return path
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError("a strongly connected component always has a cycle")


def topological_order(graph: Graph) -> list[int]:
    """The nodes of a validated DAG, each after all its dependencies (Kahn)."""
    waiting = [len(deps) for deps in graph.dependencies]
    order = [node for node in range(len(waiting)) if waiting[node] == 0]
    dependents = graph.dependents
    for node in order:  # grows while iterating
        for dependent in dependents[node]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                order.append(dependent)
    return order
