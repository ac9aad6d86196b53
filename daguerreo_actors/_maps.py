"""A mapped task in the scheduler core: children made at run time, their outputs collected.

Part of the core (a mixin of the Scheduler, plain Python, no threads); the
shell's side is ``_map_shell.py``. A task with ``map_over`` runs once per
item of the sequence at ``ctx[map_over]``, each run a child task, a real
node of the same job: children are queued like any READY task, so mapping
never makes a task wait on tasks (no deadlock, whatever the concurrency).

- The mapped task becomes READY: ``_make_ready`` lists it in
  ``expansions`` instead of queueing it.
- The shell reads the sequence and calls :meth:`MapCore.expand`: the parent
  READY -> RUNNING (attempt 1, holding no slot), its children appended as
  isolated nodes to the graph and to every per-node list (each like its
  parent: retries, resources, priority, overlap), each UNSCHEDULED ->
  READY. Or :meth:`MapCore.map_invalid` (not a sequence, too long):
  READY -> RUNNING -> INVALID_RESULT.
- A child's output is kept, never merged into the ctx. When the last child
  ends, the parent's output (``{key: [each child's value, in item
  order]}``) goes to ``collected``; the shell merges it into the ctx book
  (the conflict check) and calls :meth:`MapCore.map_done`: RUNNING ->
  COMPLETED, or INVALID_RESULT.
- A child that ends FAILED or INVALID_RESULT fails its parent at once
  (RUNNING -> FAILED, the one transition only a mapped task makes) unless
  the parent has ``continue_on_failure`` and the child FAILED: then its
  place in the lists holds None. The failure that counts is the child's
  own :class:`Failure` (so ``failed_task`` names the child); its siblings
  that wait are cancelled or skipped, offers taken back first (those
  running run on, their output not kept): the parent's output can no
  longer be made.
- Cancel, the job timeout and ``on_failure="stop"`` cancel a RUNNING parent
  like any task, but it frees no slot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from daguerreo_actors._books import ALL_COMPLETED, Transition
from daguerreo_actors._failures import Propagation
from daguerreo_actors._result import Failure
from daguerreo_actors._states import JobState, TaskState

_UNSCHEDULED = TaskState.UNSCHEDULED
_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_COMPLETED = TaskState.COMPLETED
_EXCEPTION = TaskState.EXCEPTION
_TIMED_OUT = TaskState.TIMED_OUT
_INVALID_RESULT = TaskState.INVALID_RESULT
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED
_SKIPPED = TaskState.SKIPPED


@dataclasses.dataclass(slots=True)
class MapRun:
    """One mapped task's children while it runs."""

    first: int  # the node of child 0; the children are first .. first + count - 1
    count: int
    keys: tuple[str, ...]  # output keys known beforehand (a dag task's), listed first
    outputs: list[Mapping[Any, Any] | None]
    remaining: int


class MapCore(Propagation):
    """Expanding, collecting and failing mapped tasks (see the module docstring)."""

    def expand(
        self,
        parent: int,
        names: Sequence[str],
        keys: tuple[str, ...] = (),
        restored: Mapping[int, Mapping[Any, Any]] | None = None,
    ) -> list[int]:
        """Start ``parent`` with one child per name (``task[i]``); the nodes started.

        ``restored`` (a resumed job's): children, by index, whose recorded
        outputs are kept at once, each UNSCHEDULED -> COMPLETED.
        """
        if not self._expandable(parent):
            return []
        count = len(names)
        self.attempts[parent] += 1
        self._set(parent, _RUNNING)
        children = self.graph.add_isolated(names)
        self._grow(parent, count)
        self.maps[parent] = MapRun(children.start, count, keys, [None] * count, count)
        parent_of = self.parent_of
        for child in children:
            parent_of[child] = parent
        self.unfinished += count
        if count == 0:
            self.collected.append((parent, {key: [] for key in keys}))
            return []
        ready = list(children)
        if restored:
            ready = [child for child in children if child - children.start not in restored]
            for index, output in restored.items():
                self._restore_child(children.start + index, output)
            self._propagate()
        if ready:
            self._make_ready(ready)
        return self._dispatch()

    def _restore_child(self, child: int, output: Mapping[Any, Any]) -> None:
        self.states[child] = _COMPLETED  # UNSCHEDULED -> COMPLETED, as Scheduler.start does
        if self.record:
            self.transitions.append(
                Transition(child, _UNSCHEDULED, _COMPLETED, 0, output, restored=True)
            )
        self.keep_output(child, output)
        self._terminal(child, _COMPLETED)

    def map_invalid(self, parent: int, value: Any, detail: str) -> list[int]:
        """What ``ctx[map_over]`` holds cannot be mapped: READY -> RUNNING -> INVALID_RESULT."""
        if not self._expandable(parent):
            return []
        self.attempts[parent] += 1
        self._set(parent, _RUNNING)
        return self._map_invalid(parent, value, detail)

    def map_done(
        self, parent: int, output: dict[Any, Any], detail: str | None = None
    ) -> list[int] | None:
        """The collected output was merged (``detail``: why it could not be)."""
        if self.states[parent] is not _RUNNING or self.job_state is not JobState.RUNNING:
            return None
        del self.maps[parent]
        if detail is not None:
            return self._map_invalid(parent, output, detail)
        self.states[parent] = _COMPLETED  # RUNNING -> COMPLETED, always allowed
        if self.record:
            self.transitions.append(
                Transition(parent, _RUNNING, _COMPLETED, self.attempts[parent], output, mapped=True)
            )
        self.outputs.append(output)
        self._terminal(parent, _COMPLETED)
        return self._settle()

    # -- internals --------------------------------------------------------

    def _expandable(self, parent: int) -> bool:
        if parent not in self.expansions:
            return False
        self.expansions.remove(parent)
        return self.job_state is JobState.RUNNING and self.states[parent] is _READY

    def _map_invalid(self, parent: int, value: Any, detail: str) -> list[int]:
        self._set(parent, _INVALID_RESULT, value, detail=detail)
        failure = Failure(self.graph.names[parent], _INVALID_RESULT, None, value)
        self._terminal(parent, _INVALID_RESULT, failure)
        self._count_failure(failure)
        return self._settle()

    def _grow(self, parent: int, count: int) -> None:
        """Every per-node list gets ``count`` children like ``parent``."""
        first = len(self.states)
        self.states.extend([_UNSCHEDULED] * count)
        self.attempts.extend([0] * count)
        self.waiting_on.extend([0] * count)
        self.failed_deps.extend([0] * count)
        self.kinds.extend([ALL_COMPLETED] * count)
        self.cleanup.extend([self.cleanup[parent]] * count)
        self.max_retries.extend([self.max_retries[parent]] * count)
        # A child's failure is its parent's business (_child_ended).
        self.continue_on_failure.extend([True] * count)
        self.resources.extend([self.resources[parent]] * count)
        self.overlap.extend([self.overlap[parent]] * count)
        if self.cache is not None:
            self.cache.extend([False] * count)
        if self.mapped is not None:
            self.mapped.extend([False] * count)
        self.ready.add_like(parent, count)
        self.order.extend(range(first, first + count))

    def keep_output(self, child: int, output: Mapping[Any, Any]) -> None:
        run = self.maps.get(self.parent_of[child])
        if run is not None:
            run.outputs[child - run.first] = output

    def _settle(self) -> list[int]:
        raise NotImplementedError

    def _child_ended(self, parent: int, new: TaskState, failure: Failure | None) -> None:
        if self.states[parent] is not _RUNNING:
            return  # the parent ended first (failed, cancelled): nothing to collect
        run = self.maps[parent]
        run.remaining -= 1
        if new is _INVALID_RESULT or (new is _FAILED and not self.continue_on_failure[parent]):
            assert failure is not None
            self._fail_map(parent, run, failure)
            return
        if run.remaining == 0:
            self.collected.append((parent, collect(run)))

    def _fail_map(self, parent: int, run: MapRun, failure: Failure) -> None:
        del self.maps[parent]
        self._set(parent, _FAILED, exception=failure.exception)
        self._terminal(parent, _FAILED)
        self._cancel_children(range(run.first, run.first + run.count))
        self._count_failure(failure)

    def _cancel_children(self, nodes: range) -> None:
        """A failed map's children still to run: those waiting end, the others run on.

        Waiting retries are CANCELLED and queued children SKIPPED. Offers are
        taken back first (``_offers.py``; the others are offered again). A
        child already running, or taken by a worker before the offer could
        be taken back, runs to its end: cancelling it here could race the
        report of the attempt whose slot the worker gave it. What they
        return is not kept.
        """
        self._withdraw_offers()
        states = self.states
        offered, claimed = self.offered, self.claimed
        queued: set[int] = set()
        for node in nodes:
            current = states[node]
            if current is _EXCEPTION or current is _TIMED_OUT:
                self._set(node, _CANCELLED)  # a retry was waiting
                self._terminal(node, _CANCELLED)
            elif current is _READY and node not in offered and node not in claimed:
                queued.add(node)  # offers stay a prefix of the queue
                self._set(node, _SKIPPED)
                self._terminal(node, _SKIPPED)
        self.ready.remove_all(queued)  # one pass: a map may have 100k children


def collect(run: MapRun) -> dict[Any, Any]:
    """``{key: [each child's value or None, in item order]}``, known keys first."""
    keys = list(run.keys)
    seen = set(keys)
    outputs = run.outputs
    for output in outputs:
        if output:
            for key in output:
                if key not in seen:  # a child's keys are str (_map_shell.py)
                    seen.add(key)
                    keys.append(key)
    return {key: [None if out is None else out.get(key) for out in outputs] for key in keys}
