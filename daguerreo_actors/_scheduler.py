"""The job's bookkeeping: the functional core of the JobActor, with no threads.

State, all indexed by node (a task's position in the validated list):

- ``states[i]``: the task's :class:`TaskState`.
- ``attempts[i]``: attempts started so far (incremented on READY -> RUNNING).
- ``waiting_on[i]``: dependencies of ``i`` not yet COMPLETED; at 0 it is READY.
- ``ready``: the FIFO of READY nodes; ``running``: how many are RUNNING.
- ``outputs``: the outputs of COMPLETED tasks, in completion order (the
  final ``JobResult.ctx`` is built from these so it keeps that order). The
  ctx snapshots handed to starting tasks are not the core's business: the
  shell keeps them (``_ctx.py``), merged on the reporting task's thread.

Offers (``offer``, ``claimed``, the ``revoke`` hook): see ``_offers.py``,
which explains them once for the core and the shell.

The JobActor feeds it one call per message it receives (``start``,
``completed``, ``invalid_result``, ``failed``, ``timed_out``, ``end``). Each
call returns the nodes it moved READY -> RUNNING, which the actor must now
start, or None when the message was stale (about an attempt that is no
longer running, e.g. the late result of an attempt that timed out): a stale
message changes nothing, so late results are never merged. Every freed slot
is refilled inside the same call, whatever freed it, with one exception:
while a node a worker took from the offers has its start unreported
(``claimed``), nothing else starts, so RUNNING follows queue order exactly;
the report naming it is already in the actor's mailbox, and reading it
records that start and refills the slots left free.

Every task transition goes through :meth:`Scheduler._set`, which checks it
against :data:`TASK_TRANSITIONS`. Transitions are recorded in
``transitions`` as :class:`Transition` records (all of them when ``record``
is true, else only the failure ones, which are logged at warning level even
when nobody listens) for the actor to turn into events and log entries.

The job's first failure that made it FAILED is kept as a :class:`Failure`
(``failure``); the JobActor copies it into the ``JobResult``.

Retry decisions are made by the supervisor and passed in; the core only
refuses one that would break ``attempts <= max_retries + 1``.

Ending the job goes through ``decide_end``: a hook that may change the final
state (the actor uses it to let a concurrent ``Job.cancel()`` win), the
identity by default.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daguerreo_actors._errors import InternalError
from daguerreo_actors._graph import Graph
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

#: Transitions recorded even when ``record`` is off (they are logged at
#: warning level or above).
NOTABLE_STATES: frozenset[TaskState] = frozenset({_EXCEPTION, _TIMED_OUT, _INVALID_RESULT, _FAILED})

# The table, re-keyed by id() for the hot path: Enum.__hash__ is a Python
# function, and hashing an (old, new) tuple calls it twice per transition.
_NEXT: dict[int, frozenset[int]] = {
    id(state): frozenset(id(new) for old, new in TASK_TRANSITIONS if old is state)
    for state in TaskState
}
_NOTABLE: frozenset[int] = frozenset(map(id, NOTABLE_STATES))


def retry_allowed(attempts: int, max_retries: int) -> bool:
    """The retry policy: ``max_retries + 1`` attempts in all."""
    return attempts <= max_retries


class Scheduler:
    """Task states, ready queue and job state of one job; see the module doc."""

    def __init__(
        self,
        graph: Graph,
        *,
        max_concurrency: int,
        max_retries: Sequence[int],
        continue_on_failure: Sequence[bool],
        ctx: Mapping[Any, Any] | None = None,
        record: bool = True,
        decide_end: Callable[[JobState], JobState] | None = None,
        revoke: Callable[[int], bool] | None = None,
    ) -> None:
        n = len(graph)
        if len(max_retries) != n or len(continue_on_failure) != n:
            raise ValueError("one max_retries and continue_on_failure per node")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.graph = graph
        self.max_concurrency = max_concurrency
        self.max_retries = tuple(max_retries)
        self.continue_on_failure = tuple(continue_on_failure)
        self.states: list[TaskState] = [_UNSCHEDULED] * n
        self.attempts: list[int] = [0] * n
        self.waiting_on: list[int] = [len(deps) for deps in graph.dependencies]
        self.ready: deque[int] = deque()
        self.running = 0
        self.unfinished = n
        self.initial_ctx: Mapping[Any, Any] = {} if ctx is None else ctx
        self.outputs: list[Mapping[Any, Any]] = []
        self.job_state = JobState.IDLE
        self.record = record
        self.transitions: list[Transition] = []
        # (position in ``transitions`` when it happened, old, new): lets the
        # actor interleave job and task events in the order they happened.
        self.job_transitions: list[tuple[int, JobState, JobState]] = []
        #: The failure that made the job FAILED (None otherwise).
        self.failure: Failure | None = None
        self._decide_end = decide_end
        # Offers (``_offers.py``): ``offered`` is always a prefix of
        # ``ready``; ``claimed`` holds nodes a worker has taken whose start
        # has not been reported yet.
        self.offered: set[int] = set()
        self.claimed: dict[int, None] = {}  # an ordered set: claims in queue order
        self._revoke = revoke

    # -- inputs -----------------------------------------------------------

    def start(self) -> list[int]:
        """IDLE -> RUNNING; the tasks without dependencies become READY."""
        self._set_job(JobState.RUNNING)
        if self.unfinished == 0:
            self._end(JobState.COMPLETED)
            return []
        waiting_on = self.waiting_on
        roots = [node for node in range(len(waiting_on)) if waiting_on[node] == 0]
        self._make_ready(roots)
        return self._dispatch()

    def completed(
        self,
        node: int,
        attempt: int,
        result: Mapping[Any, Any],
        claimed: int | None = None,
    ) -> list[int] | None:
        """The attempt returned a mapping: merge it, release dependents.

        ``claimed`` is the offered node the reporting worker took and started
        in the slot this attempt freed.
        """
        if not self._is_current(node, attempt):
            if claimed is not None and not self.ended:
                raise InternalError(f"a stale report of node {node} claims node {claimed}")
            return None
        if claimed is not None and claimed not in self.claimed and claimed not in self.offered:
            # Checked before anything changes, like a refused retry.
            raise InternalError(f"node {claimed} was started without an offer")
        self._set(node, _COMPLETED, result)
        self.running -= 1
        self.unfinished -= 1
        if claimed is not None:
            self._start_claimed(claimed)
        self.outputs.append(result)
        waiting_on = self.waiting_on
        released: list[int] = []
        for dependent in self.graph.dependents[node]:
            left = waiting_on[dependent] - 1
            waiting_on[dependent] = left
            if left == 0:
                released.append(dependent)
        if released:
            self._make_ready(released)
        elif self.unfinished == 0:
            self._end(JobState.COMPLETED)
            return []
        return self._dispatch()

    def invalid_result(
        self, node: int, attempt: int, value: Any, detail: str | None = None
    ) -> list[int] | None:
        """The attempt returned what cannot be merged: a programming error, no retry."""
        if not self._is_current(node, attempt):
            return None
        self._set(node, _INVALID_RESULT, value, detail=detail)
        self.running -= 1
        self.unfinished -= 1
        self._end(JobState.FAILED, Failure(self.graph.names[node], _INVALID_RESULT, None, value))
        return []

    def failed(
        self, node: int, attempt: int, exception: BaseException, retry: bool
    ) -> list[int] | None:
        """The attempt raised; ``retry`` is the supervisor's decision."""
        if not self._is_current(node, attempt):
            return None
        self._check_retry(node, retry)
        self._set(node, _EXCEPTION, exception=exception)
        self.running -= 1
        return self._after_failure(node, _EXCEPTION, exception, retry)

    def timed_out(self, node: int, attempt: int, retry: bool) -> list[int] | None:
        """The attempt passed its deadline; ``retry`` is the supervisor's decision."""
        if not self._is_current(node, attempt):
            return None
        self._check_retry(node, retry)
        self._set(node, _TIMED_OUT)
        self.running -= 1
        return self._after_failure(node, _TIMED_OUT, None, retry)

    def end(self, state: JobState, exception: BaseException | None = None) -> bool:
        """End the job from outside (cancel, job timeout, internal error).

        ``exception`` is recorded as the job's exception (say, the InternalError
        naming what stopped it). Returns False if the job had already ended.
        """
        if self.job_state is not JobState.RUNNING:
            if self.job_state is JobState.IDLE:
                self._set_job(JobState.RUNNING)
            else:
                return False
        self._end(state, None if exception is None else Failure(None, None, exception, None))
        return True

    def offer(self, limit: int) -> list[int]:
        """Offer READY nodes for workers to take when they free a slot.

        Tops the offers up to ``limit`` from the front of the ready queue and
        returns the nodes newly offered, in queue order. Offers taken whose
        start is not reported yet (``claimed``) count against the limit: it
        bounds every offer outstanding, hence the TaskActors made for them.
        """
        ready = self.ready
        offered = self.offered
        first = len(offered)
        last = min(limit - len(self.claimed), len(ready))
        new = [ready[position] for position in range(first, last)]
        offered.update(new)
        return new

    # -- queries ----------------------------------------------------------

    @property
    def ended(self) -> bool:
        """True once the job is in a terminal state."""
        return self.job_state.is_terminal

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

    # -- internals --------------------------------------------------------

    def is_running(self, node: int, attempt: int) -> bool:
        """True if ``attempt`` of ``node`` is the one running now."""
        return self._is_current(node, attempt)

    def _is_current(self, node: int, attempt: int) -> bool:
        return (
            self.states[node] is _RUNNING
            and self.attempts[node] == attempt
            and self.job_state is JobState.RUNNING
        )

    def _withdraw(self, node: int) -> bool:
        """Take back an offer; False if a worker took it first (now claimed)."""
        if self._revoke is None or self._revoke(node):
            return True
        self.claimed[node] = None
        return False

    def _start_claimed(self, node: int) -> None:
        if node in self.claimed:
            del self.claimed[node]
        elif node in self.offered:
            self.offered.discard(node)
            self.ready.remove(node)
        else:
            raise InternalError(f"node {node} was started without an offer")
        self.attempts[node] += 1
        self._set(node, _RUNNING)
        self.running += 1

    def _check_retry(self, node: int, retry: bool) -> None:
        # Checked before anything changes, so a refused retry leaves the task
        # RUNNING, and ending the job then cancels it like any running task.
        if retry and not retry_allowed(self.attempts[node], self.max_retries[node]):
            raise InternalError(
                f"retry of node {node} refused: {self.attempts[node]} attempts "
                f"already, max_retries={self.max_retries[node]}"
            )

    def _after_failure(
        self,
        node: int,
        reason: TaskState,
        exception: BaseException | None,
        retry: bool,
    ) -> list[int]:
        if retry:
            self._set(node, _READY)
            self.ready.append(node)
            return self._dispatch()
        self._set(node, _FAILED, exception=exception)
        self.unfinished -= 1
        if not self.continue_on_failure[node]:
            self._end(JobState.FAILED, Failure(self.graph.names[node], reason, exception, None))
            return []
        if self.unfinished == 0:
            self._end(JobState.COMPLETED)
            return []
        return self._dispatch()

    def _make_ready(self, nodes: list[int]) -> None:
        # Every READY transition of the batch is recorded before any start.
        # More dependents first: they unlock the most work; ties keep list
        # order (nodes arrive in index order and sort is stable).
        if len(nodes) > 1:
            dependents = self.graph.dependents
            nodes.sort(key=lambda node: -len(dependents[node]))
        for node in nodes:
            self._set(node, _READY)
        self.ready.extend(nodes)

    def _dispatch(self) -> list[int]:
        started: list[int] = []
        ready = self.ready
        attempts = self.attempts
        offered = self.offered
        # While a taken offer's start is unread, nothing else starts: it is
        # ahead in the queue, and its report (already in the mailbox, see
        # _offers.py) records its start, then refills the slots left free.
        while not self.claimed and self.running < self.max_concurrency and ready:
            node = ready.popleft()
            if node in offered:
                offered.discard(node)
                if not self._withdraw(node):
                    break  # a worker took it; its start comes with a report
            attempts[node] += 1
            self._set(node, _RUNNING)
            self.running += 1
            started.append(node)
        return started

    def _set(
        self,
        node: int,
        new: TaskState,
        result: Any = None,
        exception: BaseException | None = None,
        detail: str | None = None,
    ) -> None:
        old = self.states[node]
        if id(new) not in _NEXT[id(old)]:
            raise InternalError(f"illegal transition of {self.graph.names[node]!r}: {old} -> {new}")
        self.states[node] = new
        if self.record or id(new) in _NOTABLE:
            self.transitions.append(
                Transition(node, old, new, self.attempts[node], result, exception, detail)
            )

    def _set_job(self, new: JobState) -> None:
        old = self.job_state
        if (old, new) not in JOB_TRANSITIONS:
            raise InternalError(f"illegal job transition: {old} -> {new}")
        self.job_state = new
        self.job_transitions.append((len(self.transitions), old, new))

    def _end(self, state: JobState, failure: Failure | None = None) -> None:
        if self._decide_end is not None:
            state = self._decide_end(state)
        # Withdraw every offer; one a worker already took has started, and is
        # cancelled like any running task.
        for node in list(self.ready)[: len(self.offered)]:
            self._withdraw(node)
        self.offered.clear()
        if self.unfinished:
            states = self.states
            claimed = self.claimed
            for node in range(len(states)):
                current = states[node]
                if current is _RUNNING:
                    self._set(node, _CANCELLED)
                    self.running -= 1
                elif current is _READY and node in claimed:
                    continue  # below, once the slot it took is free
                elif current is _READY or current is _UNSCHEDULED:
                    self._set(node, _SKIPPED)
            # A node a thread already took started in the slot of the attempt
            # whose report is in flight: record its start only after every
            # running attempt was cancelled, so the books never show more
            # than max_concurrency RUNNING.
            for node in claimed:
                self.attempts[node] += 1
                self._set(node, _RUNNING)
                self._set(node, _CANCELLED)
            claimed.clear()
            self.ready.clear()
            self.unfinished = 0
        # A task's failure counts only if the job did end FAILED (a cancel
        # may have won); the job's own (no task) is kept whatever the state.
        if failure is not None and (state is JobState.FAILED or failure.task is None):
            self.failure = failure
        self._set_job(state)
