"""The scheduler core's books: the state of one job, and the one way to change a task's state.

The state itself is described in ``_scheduler.py``, the core that drives it;
``_failures.py`` holds what an ended task does to the rest. Every task
transition goes through :meth:`Books._set`, checked against
:data:`~daguerreo_actors._states.TASK_TRANSITIONS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daguerreo_actors._errors import InternalError
from daguerreo_actors._fields import EMPTY
from daguerreo_actors._graph import Graph, topological_order
from daguerreo_actors._ready import ready_queue
from daguerreo_actors._result import Failure
from daguerreo_actors._states import JOB_TRANSITIONS, TASK_TRANSITIONS, JobState, TaskState


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One task transition as the core made it.

    ``result`` is the output on COMPLETED and the value returned on
    INVALID_RESULT; ``exception`` what the attempt raised, on EXCEPTION and
    on the FAILED that follows it. Nothing else tells them apart: a task
    may return an exception instance, which is a value like any other.
    """

    node: int
    old: TaskState
    new: TaskState
    attempt: int
    result: Any = None
    exception: BaseException | None = None
    #: Why a result is INVALID_RESULT, in words (None: it is not a mapping).
    detail: str | None = None
    #: Into EXCEPTION or TIMED_OUT: seconds until the retry (None: no retry).
    retry_in: float | None = None
    #: Into TIMED_OUT: ``"deadline"`` or ``"heartbeat"``.
    reason: str | None = None
    #: UNSCHEDULED -> COMPLETED: the output was restored from a journal.
    restored: bool = False
    #: READY -> COMPLETED: the output came from the journal's cache.
    cached: bool = False
    #: RUNNING -> COMPLETED of a mapped task: its output is its children's.
    mapped: bool = False


_UNSCHEDULED = TaskState.UNSCHEDULED
_READY = TaskState.READY
_RUNNING = TaskState.RUNNING

#: ``run_if`` as the core keeps it (``_failures.py``).
ALL_COMPLETED = 0
ALL_DONE = 1
ANY_FAILED = 2
KINDS = {"all_completed": ALL_COMPLETED, "all_done": ALL_DONE, "any_failed": ANY_FAILED}

#: Transitions recorded even when ``record`` is off (they are logged at
#: warning level or above).
NOTABLE_STATES: frozenset[TaskState] = frozenset(
    {
        TaskState.EXCEPTION,
        TaskState.TIMED_OUT,
        TaskState.INVALID_RESULT,
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
    }
)

# The table, re-keyed by id() for the hot path: Enum.__hash__ is a Python
# function, and hashing an (old, new) tuple calls it twice per transition.
_NEXT: dict[int, frozenset[int]] = {
    id(state): frozenset(id(new) for old, new in TASK_TRANSITIONS if old is state)
    for state in TaskState
}
_NOTABLE: frozenset[int] = frozenset(map(id, NOTABLE_STATES))


class Books:
    """The state of one job's core; see ``_scheduler.py``."""

    def __init__(
        self,
        graph: Graph,
        *,
        max_concurrency: int,
        max_retries: Sequence[int],
        continue_on_failure: Sequence[bool],
        run_if: Sequence[str] | None = None,
        on_failure: str = "stop",
        priorities: Sequence[int] | None = None,
        resources: Sequence[Mapping[str, int]] | None = None,
        capacity: Mapping[str, int] | None = None,
        ctx: Mapping[Any, Any] | None = None,
        record: bool = True,
        decide_end: Callable[[JobState], JobState] | None = None,
        revoke: Callable[[int], bool] | None = None,
        overlap: Sequence[bool] | None = None,
        cache: Sequence[bool] | None = None,
        mapped: Sequence[bool] | None = None,
    ) -> None:
        n = len(graph)
        if len(max_retries) != n or len(continue_on_failure) != n:
            raise ValueError("one max_retries and continue_on_failure per node")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.graph = graph
        self.max_concurrency = max_concurrency
        # Lists: a mapped task's children are appended (``_maps.py``).
        self.max_retries = list(max_retries)
        self.continue_on_failure = list(continue_on_failure)
        self.kinds = [KINDS[r] for r in run_if] if run_if is not None else [0] * n
        self.cleanup = [kind != 0 for kind in self.kinds]
        self.on_failure = on_failure
        self.resources: list[Mapping[str, int]] = list(resources or [EMPTY] * n)
        self.free: dict[str, int] = dict(capacity or {})
        self.held: dict[tuple[int, int], Mapping[str, int]] = {}
        # No overlap (``_scheduler.py``): a timed-out attempt's slot stays
        # taken until its code returns, and its retry waits for that.
        self.overlap: list[bool] = list(overlap) if overlap is not None else [True] * n
        #: Tasks whose recorded output may be reused (``_cached.py``), or None.
        self.cache: list[bool] | None = list(cache) if cache and any(cache) else None
        #: Mapped tasks (``_maps.py``), or None; their running maps; children's parents.
        self.mapped: list[bool] | None = list(mapped) if mapped and any(mapped) else None
        self.maps: dict[int, Any] = {}
        self.parent_of: dict[int, int] = {}
        self.expansions: list[int] = []  # READY mapped tasks, for the shell to expand
        self.collected: list[tuple[int, dict[Any, Any]]] = []  # for the shell to merge
        self.checking: set[int] = set()  # READY, their cache being checked
        self.cache_checks: list[int] = []  # for the shell to check
        self.occupying: set[tuple[int, int]] = set()  # (node, attempt) holding a slot
        self.occupied = 0
        self.waiting_time: set[int] = set()  # retries waiting for their delay
        self.waiting_code: set[int] = set()  # retries waiting for the code to return
        self.states: list[TaskState] = [_UNSCHEDULED] * n
        self.attempts: list[int] = [0] * n
        self.waiting_on: list[int] = [len(deps) for deps in graph.dependencies]
        self.failed_deps: list[int] = [0] * n
        self.ready = ready_queue(list(priorities or [0] * n), self.resources)
        self.order = topological_order(graph)
        self.running = 0
        self.unfinished = n
        self.stopping = False
        self.initial_ctx: Mapping[Any, Any] = {} if ctx is None else ctx
        self.outputs: list[Mapping[Any, Any]] = []
        self.job_state = JobState.IDLE
        #: True once the job is in a terminal state (read on every report: a
        #: plain attribute, not a property).
        self.ended = False
        self.record = record
        self.transitions: list[Transition] = []
        # (position in ``transitions`` when it happened, old, new): lets the
        # actor interleave job and task events in the order they happened.
        self.job_transitions: list[tuple[int, JobState, JobState]] = []
        #: Every task that ended FAILED or INVALID_RESULT, in failure order.
        self.failures: list[Failure] = []
        #: The failure that made the job FAILED (None otherwise).
        self.failure: Failure | None = None
        #: (node, attempt, seconds): retries the shell must wake with ``retry_due``.
        self.retry_waits: list[tuple[int, int, float]] = []
        #: Nodes whose running attempt the core cancelled: the shell abandons them.
        self.abandon: list[int] = []
        self._ended_queue: list[tuple[int, TaskState]] = []
        self._decide_end = decide_end
        # Offers (``_offers.py``): ``offered`` is always a prefix of
        # ``ready``; ``claimed`` holds nodes a worker has taken whose start
        # has not been reported yet.
        self.offered: set[int] = set()
        self.claimed: dict[int, None] = {}  # an ordered set: claims in queue order
        #: Claims the stop recorded as started and cancelled, their reports in flight.
        self.settled_claims: set[int] = set()
        self._revoke = revoke

    def take_transitions(self) -> list[Transition]:
        taken = self.transitions
        self.transitions = []
        return taken

    def take_job_transitions(self) -> list[tuple[int, JobState, JobState]]:
        taken = self.job_transitions
        self.job_transitions = []
        return taken

    def final_ctx(self) -> dict[Any, Any]:
        """The initial ctx updated with every output, in completion order."""
        ctx = dict(self.initial_ctx)
        for output in self.outputs:
            ctx.update(output)
        return ctx

    def is_running(self, node: int, attempt: int) -> bool:
        """True if ``attempt`` of ``node`` is the one running now."""
        return self._is_current(node, attempt)

    # -- the one way to change a state, and what every part needs ----------

    def _is_current(self, node: int, attempt: int) -> bool:
        return (
            self.states[node] is _RUNNING
            and self.attempts[node] == attempt
            and self.job_state is JobState.RUNNING
        )

    def _release_slot(self, node: int, attempt: int | None = None) -> None:
        """The node's attempt leaves RUNNING; with ``attempt``, its code returned too."""
        self.running -= 1
        if attempt is not None:
            held = self.held.pop((node, attempt), None)
            if held is not None:
                for name, amount in held.items():
                    self.free[name] += amount

    def _fits(self, node: int) -> bool:
        free = self.free
        return all(free[name] >= amount for name, amount in self.resources[node].items())

    def _make_ready(self, nodes: list[int]) -> None:
        # Every READY transition of the batch is recorded before any start.
        # More dependents first: they unlock the most work; ties keep list
        # order (nodes arrive in index order and sort is stable).
        if len(nodes) > 1:
            dependents = self.graph.dependents
            nodes.sort(key=lambda node: -len(dependents[node]))
        for node in nodes:
            self._set(node, _READY)
        if self.mapped is not None:
            # A mapped task is expanded by the shell, holding no slot (``_maps.py``).
            mapped = self.mapped
            expanded = [node for node in nodes if mapped[node]]
            if expanded:
                self.expansions.extend(expanded)
                nodes = [node for node in nodes if not mapped[node]]
        if self.cache is not None:
            # A cached task's journal is asked first (``_cached.py``).
            checked = [node for node in nodes if self.cache[node]]
            if checked:
                self.checking.update(checked)
                self.cache_checks.extend(checked)
                nodes = [node for node in nodes if not self.cache[node]]
        self.ready.extend(nodes)

    def _set(
        self,
        node: int,
        new: TaskState,
        result: Any = None,
        exception: BaseException | None = None,
        detail: str | None = None,
        retry_in: float | None = None,
        reason: str | None = None,
    ) -> None:
        old = self.states[node]
        if id(new) not in _NEXT[id(old)]:
            raise InternalError(f"illegal transition of {self.graph.names[node]!r}: {old} -> {new}")
        self.states[node] = new
        if self.record or id(new) in _NOTABLE:
            self.transitions.append(
                Transition(
                    node, old, new, self.attempts[node], result, exception, detail, retry_in, reason
                )
            )

    def _set_job(self, new: JobState) -> None:
        old = self.job_state
        if (old, new) not in JOB_TRANSITIONS:
            raise InternalError(f"illegal job transition: {old} -> {new}")
        self.job_state = new
        self.ended = new.is_terminal
        self.job_transitions.append((len(self.transitions), old, new))

    # -- provided by the Scheduler -----------------------------------------

    def _end(self, state: JobState, failure: Failure | None = None) -> None:
        raise NotImplementedError

    def _dispatch(self) -> list[int]:
        raise NotImplementedError

    def _withdraw_offers(self) -> None:
        raise NotImplementedError
