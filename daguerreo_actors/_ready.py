"""The ready queue of the scheduler core: who starts next.

Order: higher ``priority`` first; then the order tasks became READY, where
tasks that became READY together are queued with more dependents first (they
unlock the most work), then in task-list order. A retried task goes to the
back.

Two shapes, chosen once per job:

- :class:`FifoReady`, when every task has the same priority and none needs
  a resource: a deque, whose head is what starts next. Only this one
  supports offers (``_offers.py``): they are a prefix of it.
- :class:`RankedReady`, otherwise: one heap per *signature* (the exact
  resources a task needs; no resources is a signature too) of
  ``(-priority, seq, node)``. ``take(fits)`` starts the first task in the
  order above whose resources fit: a task waiting for a resource never
  blocks the tasks behind it that can start. Only each signature's head is
  looked at, never the whole queue: tasks of one signature need the same
  resources, so if its head does not fit, none of them does. The scan costs
  one look per signature, a handful in practice.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence

Signature = tuple[tuple[str, int], ...]


class FifoReady(deque[int]):
    """READY nodes in start order; see the module docstring.

    A deque itself: ``len``, ``ready[i]``, ``popleft`` and ``remove`` on the
    scheduling path are C calls (a wrapper's methods cost a Python call
    each, several per task).
    """

    __slots__ = ()
    fifo = True

    def add_like(self, model: int, count: int) -> None:
        """``count`` new nodes ranked as ``model`` (a mapped task's children)."""

    def take(self, fits: Callable[[int], bool]) -> int | None:
        return self.popleft() if self else None

    def remove_all(self, nodes: set[int]) -> None:
        """Remove many nodes at once: one pass over the queue (a stop, a failed map)."""
        if nodes:
            kept = [node for node in self if node not in nodes]
            self.clear()
            self.extend(kept)


class RankedReady:
    """READY nodes by priority, then READY order, per resource signature."""

    __slots__ = ("_heaps", "_priorities", "_queued", "_seq", "_signatures")
    fifo = False

    def __init__(self, priorities: Sequence[int], resources: Sequence[Mapping[str, int]]) -> None:
        self._priorities = list(priorities)
        self._signatures: list[Signature] = [tuple(sorted(r.items())) for r in resources]
        self._heaps: dict[Signature, list[tuple[int, int, int]]] = {}
        self._seq = itertools.count()
        # node -> seq of its live heap entry. An entry whose seq is not here
        # was removed (O(1)), and is dropped when it reaches its heap's head.
        self._queued: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def __iter__(self) -> Iterator[int]:
        queued = self._queued
        entries = [e for heap in self._heaps.values() for e in heap if queued.get(e[2]) == e[1]]
        entries.sort()
        return iter([node for _, _, node in entries])

    def extend(self, nodes: Sequence[int]) -> None:
        priorities, signatures, heaps = self._priorities, self._signatures, self._heaps
        for node in nodes:
            heap = heaps.get(signatures[node])
            if heap is None:
                heap = heaps[signatures[node]] = []
            seq = self._queued[node] = next(self._seq)
            heapq.heappush(heap, (-priorities[node], seq, node))

    def add_like(self, model: int, count: int) -> None:
        """``count`` new nodes ranked as ``model`` (a mapped task's children)."""
        self._priorities.extend([self._priorities[model]] * count)
        self._signatures.extend([self._signatures[model]] * count)

    def take(self, fits: Callable[[int], bool]) -> int | None:
        """Remove and return the first node in order that ``fits``, or None."""
        best: list[tuple[int, int, int]] | None = None
        for heap in self._heaps.values():
            self._drop_gone(heap)
            if heap and (best is None or heap[0] < best[0]) and fits(heap[0][2]):
                best = heap
        if best is None:
            return None
        node = heapq.heappop(best)[2]
        del self._queued[node]
        return node

    def remove(self, node: int) -> None:
        if self._queued.pop(node, None) is None:
            raise ValueError(f"node {node} is not queued")

    def remove_all(self, nodes: set[int]) -> None:
        for node in nodes:
            self.remove(node)

    def clear(self) -> None:
        self._heaps.clear()
        self._queued.clear()

    def _drop_gone(self, heap: list[tuple[int, int, int]]) -> None:
        queued = self._queued
        while heap and queued.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)


ReadyQueue = FifoReady | RankedReady


def ready_queue(priorities: Sequence[int], resources: Sequence[Mapping[str, int]]) -> ReadyQueue:
    """The queue shape a job needs (see the module docstring)."""
    if any(resources) or len(set(priorities)) > 1:
        return RankedReady(priorities, resources)
    return FifoReady()
