"""The core's side of the cache: a READY task whose recorded output may be reused.

A task with ``cache=True`` in a job with a journal is not queued when it
becomes READY: the core lists it in ``cache_checks`` (and ``checking``),
holding no slot, and the shell asks the journal on a pool thread
(``_cache.py``). The answer comes back as one of:

- ``cache_hit(node, output)``: READY -> COMPLETED with ``cached=True``, the
  output merged like any other, its dependents released;
- ``cache_miss(node)``: the node joins the ready queue and runs as usual.

A stale answer (the job ended meanwhile) changes nothing; a node still
being checked when the job ends is SKIPPED like any READY one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daguerreo_actors._books import Transition
from daguerreo_actors._maps import MapCore
from daguerreo_actors._states import JobState, TaskState

_READY = TaskState.READY
_COMPLETED = TaskState.COMPLETED


class CacheChecks(MapCore):
    """``cache_hit`` and ``cache_miss`` (see the module docstring)."""

    def cache_hit(self, node: int, output: Mapping[Any, Any]) -> list[int] | None:
        if not self._checked(node):
            return None
        self.states[node] = _COMPLETED
        if self.record:
            self.transitions.append(
                Transition(node, _READY, _COMPLETED, self.attempts[node], output, cached=True)
            )
        self.outputs.append(output)
        self._terminal(node, _COMPLETED)
        return self._settle()

    def cache_miss(self, node: int) -> list[int] | None:
        if not self._checked(node):
            return None
        self.ready.extend([node])
        return self._dispatch()

    def _checked(self, node: int) -> bool:
        if node not in self.checking:
            return False
        self.checking.discard(node)
        return self.job_state is JobState.RUNNING and self.states[node] is _READY

    def _settle(self) -> list[int]:
        raise NotImplementedError
