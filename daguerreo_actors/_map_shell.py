"""The JobActor's side of mapped tasks: reading the sequence, growing, merging.

The core's side, and the whole flow, is in ``_maps.py``. Here, in the drain,
before the core's transitions are flushed (``JobActor._carry_out``):

- a mapped task the core set aside (``expansions``): read ``ctx[map_over]``
  from the ctx snapshot; a list or tuple of at most ``max_map`` items is
  expanded (the core appends the children; every per-node list of the shell
  grows with them, each child running the parent's function as a
  :class:`MapChild`, which puts its item in its ctx); anything else is
  INVALID_RESULT with a message naming the task, the key and the type;
- a mapped task whose children all ended (``collected``): its output is
  merged into the ctx book like a result, the conflict check included, and
  the core completes it.

No user code runs here: the sequence is a list or tuple, and a child's
output keys are checked to be ``str`` on the child's own thread
(``_map_child.py``), so collecting and merging hash only strs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daguerreo_actors._cache import CacheShell
from daguerreo_actors._map_child import MapChild, child_name

if TYPE_CHECKING:
    from daguerreo_actors._task import Task, TaskFn
    from daguerreo_actors._tiers import Tier

_MISSING = object()


class MapShell(CacheShell):
    """Expanding and merging mapped tasks (a mixin; see the module docstring)."""

    __slots__ = ()

    _tasks: list[Task]
    _fns: list[TaskFn]
    _timeouts: list[float | None]
    _tiers: list[Tier]
    _beats: list[bool]
    _started_at: list[float]
    _max_map: int
    _on_conflict: str

    def _mapping(self) -> list[int]:
        """Expand and merge until the core asks for neither; the nodes it started."""
        core = self._core
        started: list[int] = []
        while core.expansions or core.collected:
            if core.expansions:
                started += self._expand(core.expansions[0])
            else:
                parent, output = core.collected.pop(0)
                started += self._merge_map(parent, output) or []
        return started

    def _expand(self, parent: int) -> list[int]:
        task = self._tasks[parent]
        key = task.map_over
        assert key is not None
        name = self._names[parent]
        # Its duration starts here: its own (an invalid value) or its children's.
        self._started_at[parent] = self._clock.monotonic()
        value = self._book.snapshot.get(key, _MISSING)
        if value is _MISSING:
            detail = f"task {name!r}: the ctx has no key {key!r} to map over (map_over)"
            return self._core.map_invalid(parent, None, detail)
        if not isinstance(value, (list, tuple)):
            detail = (
                f"task {name!r}: ctx[{key!r}] (map_over) must be a list or tuple, "
                f"got {type(value).__name__}"
            )
            return self._core.map_invalid(parent, value, detail)
        items = list.copy(value) if isinstance(value, list) else list(tuple.__iter__(value))
        if len(items) > self._max_map:
            detail = (
                f"task {name!r}: ctx[{key!r}] (map_over) holds {len(items)} items, "
                f"more than max_map={self._max_map}"
            )
            return self._core.map_invalid(parent, value, detail)
        before = len(self._graph)
        keys = getattr(task.fn, "outputs", ()) if _is_dag_function(task.fn) else ()
        names = [child_name(name, i) for i in range(len(items))]
        restored = None
        if self._journal is not None and self._journal.restored_children:
            recorded = self._journal.restored_children
            restored = {i: recorded[child] for i, child in enumerate(names) if child in recorded}
        started = self._core.expand(parent, names, keys, restored)
        if len(self._graph) > before:
            self._grow(parent, task, items)
        return started

    def _grow(self, parent: int, task: Task, items: list[Any]) -> None:
        count = len(items)
        self._tasks.extend([task] * count)
        fn, key = task.fn, task.map_as
        self._fns.extend([MapChild(fn, key, item) for item in items])
        self._retries.extend([self._retries[parent]] * count)
        self._max_retries.extend([self._max_retries[parent]] * count)
        self._timeouts.extend([self._timeouts[parent]] * count)
        self._tiers.extend([self._tiers[parent]] * count)
        self._beats.extend([self._beats[parent]] * count)
        self._started_at.extend([0.0] * count)
        if self._journal is not None:
            self._journal.add_children(parent, count)

    def _merge_map(self, parent: int, output: dict[Any, Any]) -> list[int] | None:
        core = self._core
        if core.ended:
            return None
        name = self._names[parent]
        while True:  # pool threads merge results meanwhile: swap only the book we read
            base = self._book
            book, conflicts = base.merged(output, parent, self._graph)  # str keys only
            if conflicts and self._on_conflict == "error":
                return core.map_done(parent, output, self._conflict_error(name, conflicts[0]))
            with self._lock:
                if self._book is base:
                    self._swap_locked(book, output, None)
                    break
        if conflicts:
            self._record_conflicts(name, tuple(conflicts))
        if self._journal is not None:
            self._journal.map_completed(parent)
        return core.map_done(parent, output)


def _is_dag_function(fn: object) -> bool:
    from daguerreo_actors._dag import DagFunction

    return isinstance(fn, DagFunction)
