"""What an ended task does to the rest of the job: ``run_if``, UPSTREAM_FAILED, the stop.

Part of the scheduler core (a mixin of :class:`~daguerreo_actors._scheduler.Scheduler`,
plain Python, no threads). When a task reaches a terminal state its
dependents are told (:meth:`Propagation._ended`), through a work list, not
recursion, so a failure propagates down a 100,000-task chain:

- an ``all_completed`` task waits for every dependency to COMPLETE; one
  that ended FAILED, INVALID_RESULT or UPSTREAM_FAILED makes it
  UPSTREAM_FAILED at once (it can never run), one that ended SKIPPED or
  CANCELLED makes it SKIPPED;
- an ``all_done`` task waits for every dependency to end, however, and
  becomes READY then (cleanup, reporting); ``any_failed`` likewise, but it
  is SKIPPED unless one of them ended FAILED or UPSTREAM_FAILED (or
  INVALID_RESULT): alerting.

A failure *counts* (it makes the job FAILED) when it is INVALID_RESULT, or
FAILED without ``continue_on_failure``. Under ``on_failure="stop"`` the first
one stops the job (:meth:`Propagation._stop`): running attempts and waiting
retries are CANCELLED, tasks not started become UPSTREAM_FAILED if they
depend on a failure through ``all_completed`` edges, else SKIPPED, except
the ``all_done`` / ``any_failed`` tasks, which still run once their
dependencies have ended, like a ``finally``; the job ends FAILED after the
last of them. Under ``"continue"`` every task that can still run does, and
the job ends FAILED once nothing more can. Cancel and the job timeout start
nothing more (``Scheduler._end``).
"""

from __future__ import annotations

from daguerreo_actors._books import ALL_COMPLETED, ANY_FAILED, Books
from daguerreo_actors._result import Failure
from daguerreo_actors._states import FAILED_TASK_STATES, JobState, TaskState

_UNSCHEDULED = TaskState.UNSCHEDULED
_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_COMPLETED = TaskState.COMPLETED
_EXCEPTION = TaskState.EXCEPTION
_TIMED_OUT = TaskState.TIMED_OUT
_CANCELLED = TaskState.CANCELLED
_SKIPPED = TaskState.SKIPPED
_UPSTREAM_FAILED = TaskState.UPSTREAM_FAILED
_FAILED_LIKE = frozenset(map(id, FAILED_TASK_STATES))


class Propagation(Books):
    """Propagation and the stop, on the core's books (see the module docstring)."""

    def _terminal(self, node: int, new: TaskState, failure: Failure | None = None) -> None:
        """``node`` ends in ``new``: count it, tell its dependents (work list)."""
        self.unfinished -= 1
        self._ended_queue.append((node, new))
        if failure is not None:
            self.failures.append(failure)
        if self.parent_of:  # a mapped task's child (``_maps.py``): checked inline, hot path
            parent = self.parent_of.get(node)
            if parent is not None:
                self._child_ended(parent, new, failure)

    def _child_ended(self, parent: int, new: TaskState, failure: Failure | None) -> None:
        raise NotImplementedError  # MapCore's

    def _propagate(self) -> None:
        queue = self._ended_queue
        while queue:
            node, new = queue.pop()
            self._ended(node, new)

    def _ended(self, dep: int, state: TaskState) -> None:
        states = self.states
        kinds = self.kinds
        waiting_on = self.waiting_on
        failed_like = id(state) in _FAILED_LIKE
        released: list[int] = []
        for node in self.graph.dependents[dep]:
            if states[node] is not _UNSCHEDULED:
                continue
            if kinds[node] == ALL_COMPLETED:
                if state is _COMPLETED:
                    waiting_on[node] -= 1
                    if waiting_on[node] == 0:
                        released.append(node)
                elif failed_like:
                    self._set(node, _UPSTREAM_FAILED)
                    self._terminal(node, _UPSTREAM_FAILED)
                else:
                    self._set(node, _SKIPPED)
                    self._terminal(node, _SKIPPED)
                continue
            waiting_on[node] -= 1
            if failed_like:
                self.failed_deps[node] += 1
            if waiting_on[node] == 0:
                if kinds[node] == ANY_FAILED and not self.failed_deps[node]:
                    self._set(node, _SKIPPED)
                    self._terminal(node, _SKIPPED)
                else:
                    released.append(node)
        if released:
            self._make_ready(released)

    def _count_failure(self, failure: Failure) -> None:
        """A failure that makes the job FAILED: remember the first, stop if asked."""
        if self.failure is None:
            self.failure = failure
        if self.on_failure == "stop" and not self.stopping:
            self._stop()

    def _stop(self) -> None:
        """``on_failure="stop"``: see the module docstring."""
        self.stopping = True
        self._withdraw_offers()
        states = self.states
        cleanup = self.cleanup
        queued: set[int] = set()  # removed from the ready queue in one pass, below
        for node in range(len(states)):
            if cleanup[node]:
                continue
            current = states[node]
            if current is _RUNNING:
                self._set(node, _CANCELLED)
                if node not in self.maps:  # a mapped task holds no slot, runs no code
                    self._release_slot(node)
                    self.abandon.append(node)
                self._terminal(node, _CANCELLED)
            elif current is _EXCEPTION or current is _TIMED_OUT:
                self._set(node, _CANCELLED)  # a retry was waiting
                self._terminal(node, _CANCELLED)
            elif current is _READY and node not in self.claimed:
                if node in self.expansions:  # a mapped task, not queued
                    self.expansions.remove(node)
                elif node in self.checking:  # its cache is being checked, not queued
                    self.checking.discard(node)
                else:
                    queued.add(node)
                self._set(node, _SKIPPED)
                self._terminal(node, _SKIPPED)
        self.ready.remove_all(queued)
        # Taken offers of tasks that are no cleanup started, in the slots of
        # attempts just cancelled: record their start, then cancel them.
        for node in [n for n in self.claimed if not cleanup[n]]:
            del self.claimed[node]
            self.settled_claims.add(node)
            self.attempts[node] += 1
            self._set(node, _RUNNING)
            self._set(node, _CANCELLED)
            self.abandon.append(node)
            self._terminal(node, _CANCELLED)
        # What never started: UPSTREAM_FAILED if a failure is upstream through
        # all_completed edges, else SKIPPED; in topological order, so each
        # task sees its dependencies' final states.
        dependencies = self.graph.dependencies
        for node in self.order:
            if states[node] is not _UNSCHEDULED or cleanup[node]:
                continue
            upstream = any(id(states[dep]) in _FAILED_LIKE for dep in dependencies[node])
            new = _UPSTREAM_FAILED if upstream else _SKIPPED
            self._set(node, new)
            self._terminal(node, new)
        self._propagate()

    def _check_end(self) -> bool:
        """End the job if nothing more can run; True if it ended."""
        if self.unfinished:
            return False
        self._end(JobState.FAILED if self.failure is not None else JobState.COMPLETED)
        return True
