"""The job's bookkeeping: the functional core of the JobActor, with no threads.

State, all indexed by node (a task's position in the validated list):

- ``states[i]``: the task's :class:`TaskState`.
- ``attempts[i]``: attempts started so far (incremented on READY -> RUNNING).
- ``waiting_on[i]``: dependencies ``i`` still waits for (to COMPLETE, or
  to end at all for ``all_done``/``any_failed``: ``_failures.py``); at 0
  it is READY.
- ``ready``: the READY nodes in start order (``_ready.py``: by priority,
  and resources that fit); ``running``: how many are RUNNING; ``free``:
  what is left of each resource, held by an attempt until its code
  returned (a timed-out attempt still running keeps its share).
- ``outputs``: the outputs of COMPLETED tasks, in completion order (the
  final ``JobResult.ctx`` is built from these so it keeps that order). The
  ctx snapshots handed to starting tasks are not the core's business: the
  shell keeps them (``_ctx.py``), merged on the reporting task's thread.

Offers (``offer``, ``claimed``, the ``revoke`` hook): see ``_offers.py``,
which explains them once for the core and the shell.

The JobActor feeds it one call per message it receives (``start``,
``completed``, ``invalid_result``, ``failed``, ``timed_out``, ``retry_due``,
``code_returned``, ``end``). Each
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

Every task that ended FAILED or INVALID_RESULT is a :class:`Failure` in
``failures``; the first that made the job FAILED is ``failure``. The
JobActor copies them into the ``JobResult``. What a failure does to the
rest of the job (``run_if``, UPSTREAM_FAILED, ``on_failure``) is in
``_failures.py``.

Retry decisions (whether, and after how long) are the policy's
(``_retry.py``), passed in; the core refuses one that would break
``attempts <= max_retries + 1``. A retry with a delay leaves the task in
EXCEPTION (or TIMED_OUT), holding no slot, until ``retry_due``; the
shell arms the timer from ``retry_waits``.

Ending the job goes through ``decide_end``: a hook that may change the final
state (the actor uses it to let a concurrent ``Job.cancel()`` win), the
identity by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daguerreo_actors._books import NOTABLE_STATES, Transition
from daguerreo_actors._cached import CacheChecks
from daguerreo_actors._errors import InternalError
from daguerreo_actors._result import Failure
from daguerreo_actors._states import JobState, TaskState

__all__ = ["NOTABLE_STATES", "Scheduler", "Transition", "retry_allowed"]


_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_COMPLETED = TaskState.COMPLETED
_EXCEPTION = TaskState.EXCEPTION
_TIMED_OUT = TaskState.TIMED_OUT
_INVALID_RESULT = TaskState.INVALID_RESULT
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED
_SKIPPED = TaskState.SKIPPED
_UNSCHEDULED = TaskState.UNSCHEDULED


def retry_allowed(attempts: int, max_retries: int) -> bool:
    """``max_retries + 1`` attempts in all."""
    return attempts <= max_retries


class Scheduler(CacheChecks):
    """Task states, ready queue and job state of one job; see the module doc."""

    # -- inputs -----------------------------------------------------------

    def start(self, restored: Sequence[tuple[int, Mapping[Any, Any]]] = ()) -> list[int]:
        """IDLE -> RUNNING; the tasks without dependencies become READY.

        ``restored`` (a resumed job's): nodes whose recorded outputs are
        merged first, in that order, each UNSCHEDULED -> COMPLETED; their
        dependents may become READY at once.
        """
        self._set_job(JobState.RUNNING)
        states = self.states
        for node, output in restored:
            old = states[node]
            if old is not _UNSCHEDULED:
                raise InternalError(f"node {node} restored twice")
            states[node] = _COMPLETED
            if self.record:
                self.transitions.append(Transition(node, old, _COMPLETED, 0, output, restored=True))
            self.outputs.append(output)
            self._terminal(node, _COMPLETED)
        self._propagate()
        if self.unfinished == 0:
            self._end(JobState.COMPLETED)
            return []
        waiting_on = self.waiting_on
        roots = [
            node
            for node in range(len(waiting_on))
            if waiting_on[node] == 0 and states[node] is _UNSCHEDULED
        ]
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
            if claimed is None or self.ended:
                return None
            # The stop (or a failed map) cancelled this attempt while its
            # report, naming the offer its thread took, was in flight.
            if claimed in self.claimed:
                # A cleanup task the stop left claimed: it runs in the slot the
                # cancel freed (nothing else started while it was claimed).
                self._start_claimed(claimed)
                return self._dispatch()
            if claimed in self.settled_claims:
                self.settled_claims.discard(claimed)
                return None  # the stop recorded its start and cancelled it
            raise InternalError(f"a stale report of node {node} claims node {claimed}")
        if claimed is not None and claimed not in self.claimed and claimed not in self.offered:
            # Checked before anything changes, like a refused retry.
            raise InternalError(f"node {claimed} was started without an offer")
        self._set(node, _COMPLETED, result)
        self._release_slot(node, attempt)
        if claimed is not None:
            self._start_claimed(claimed)
        if self.parent_of and node in self.parent_of:
            self.keep_output(node, result)  # a child's: collected (_maps.py)
        else:
            self.outputs.append(result)
        self._terminal(node, _COMPLETED)
        return self._settle()

    def invalid_result(
        self, node: int, attempt: int, value: Any, detail: str | None = None
    ) -> list[int] | None:
        """The attempt returned what cannot be merged: a programming error, no retry."""
        if not self._is_current(node, attempt):
            return None
        self._set(node, _INVALID_RESULT, value, detail=detail)
        self._release_slot(node, attempt)
        failure = Failure(self.graph.names[node], _INVALID_RESULT, None, value)
        self._terminal(node, _INVALID_RESULT, failure)
        # continue_on_failure does not cover a programming error; a child's
        # failure is its parent's to count (_maps.py).
        if node not in self.parent_of:
            self._count_failure(failure)
        return self._settle()

    def failed(
        self,
        node: int,
        attempt: int,
        exception: BaseException,
        retry: bool,
        delay: float = 0.0,
    ) -> list[int] | None:
        """The attempt raised; ``retry`` (after ``delay`` seconds) is the policy's decision."""
        if not self._is_current(node, attempt):
            return None
        self._check_retry(node, retry)
        self._set(node, _EXCEPTION, exception=exception, retry_in=delay if retry else None)
        self._release_slot(node, attempt)
        return self._after_failure(node, _EXCEPTION, exception, retry, delay)

    def timed_out(
        self,
        node: int,
        attempt: int,
        retry: bool,
        delay: float = 0.0,
        reason: str = "deadline",
    ) -> list[int] | None:
        """The attempt passed its deadline (or its heartbeat); its code may still run.

        Its resources stay held until ``code_returned``; so does its slot,
        and its retry waits for that, unless the task may ``overlap``.
        """
        if not self._is_current(node, attempt):
            return None
        self._check_retry(node, retry)
        self._set(node, _TIMED_OUT, retry_in=delay if retry else None, reason=reason)
        self.running -= 1
        wait_code = not self.overlap[node]
        if wait_code:
            self.occupying.add((node, attempt))
            self.occupied += 1
        return self._after_failure(node, _TIMED_OUT, None, retry, delay, wait_code)

    def retry_due(self, node: int, attempt: int) -> list[int] | None:
        """The delay before a retry is over: EXCEPTION (or TIMED_OUT) -> READY."""
        if not self._retry_waits_for(node, attempt) or node not in self.waiting_time:
            return None
        self.waiting_time.discard(node)
        if node not in self.waiting_code:
            self._set(node, _READY)
            self.ready.extend([node])
        return self._dispatch()

    def code_returned(self, node: int, attempt: int) -> list[int] | None:
        """An abandoned attempt's code returned at last: what it held is free.

        Its resources, its slot (without overlap), and its retry may now
        come (once its delay is over too).
        """
        changed = False
        held = self.held.pop((node, attempt), None)
        if held is not None:
            for name, amount in held.items():
                self.free[name] += amount
            changed = True
        if (node, attempt) in self.occupying:
            self.occupying.discard((node, attempt))
            self.occupied -= 1
            changed = True
        if node in self.waiting_code and self._retry_waits_for(node, attempt):
            self.waiting_code.discard(node)
            if node not in self.waiting_time:
                self._set(node, _READY)
                self.ready.extend([node])
            changed = True
        if not changed or self.job_state is not JobState.RUNNING:
            return None
        return self._dispatch()

    def _retry_waits_for(self, node: int, attempt: int) -> bool:
        return (
            self.states[node] in (_EXCEPTION, _TIMED_OUT)
            and self.attempts[node] == attempt
            and self.job_state is JobState.RUNNING
        )

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
        Only a FIFO queue (no priorities, no resources) has offers.
        """
        ready = self.ready
        if not ready.fifo:
            return []
        offered = self.offered
        first = len(offered)
        last = min(limit - len(self.claimed), len(ready))
        new = [ready[position] for position in range(first, last)]  # type: ignore[index]
        offered.update(new)
        return new

    # -- queries ----------------------------------------------------------

    # -- internals --------------------------------------------------------

    def _settle(self) -> list[int]:
        """After a task ended: propagate, end the job if nothing more can run, else refill."""
        self._propagate()
        if self.ended or self._check_end():
            return []
        return self._dispatch()

    def _withdraw(self, node: int) -> bool:
        """Take back an offer; False if a worker took it first (now claimed)."""
        if self._revoke is None or self._revoke(node):
            return True
        self.claimed[node] = None
        return False

    def _withdraw_offers(self) -> None:
        # In queue order; one a worker already took has started (now claimed).
        if self.offered:
            for node in list(self.ready)[: len(self.offered)]:
                self._withdraw(node)
                if node in self.claimed:
                    self.ready.remove(node)
            self.offered.clear()

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
        delay: float,
        wait_code: bool = False,
    ) -> list[int]:
        if retry:
            if delay > 0:
                # Rests in EXCEPTION / TIMED_OUT, holding no slot, until retry_due.
                self.retry_waits.append((node, self.attempts[node], delay))
                self.waiting_time.add(node)
            if wait_code:
                self.waiting_code.add(node)  # until code_returned
            if not delay > 0 and not wait_code:
                self._set(node, _READY)
                self.ready.extend([node])
            return self._dispatch()
        self._set(node, _FAILED, exception=exception)
        failure = Failure(self.graph.names[node], reason, exception, None)
        self._terminal(node, _FAILED, failure)
        if not self.continue_on_failure[node]:
            self._count_failure(failure)
        return self._settle()

    def _dispatch(self) -> list[int]:
        started: list[int] = []
        ready = self.ready
        attempts = self.attempts
        if not ready.fifo:
            while self.running + self.occupied < self.max_concurrency and ready:
                node = ready.take(self._fits)
                if node is None:
                    break  # what waits needs resources that are taken
                attempts[node] += 1
                needs = self.resources[node]
                if needs:
                    for name, amount in needs.items():
                        self.free[name] -= amount
                    self.held[(node, attempts[node])] = needs
                self._set(node, _RUNNING)
                self.running += 1
                started.append(node)
            return started
        offered = self.offered
        # While a taken offer's start is unread, nothing else starts: it is
        # ahead in the queue, and its report (already in the mailbox, see
        # _offers.py) records its start, then refills the slots left free.
        while not self.claimed and self.running + self.occupied < self.max_concurrency and ready:
            node = ready.popleft()  # type: ignore[union-attr]
            if node in offered:
                offered.discard(node)
                if not self._withdraw(node):
                    break  # a worker took it; its start comes with a report
            attempts[node] += 1
            self._set(node, _RUNNING)
            self.running += 1
            started.append(node)
        return started

    def _end(self, state: JobState, failure: Failure | None = None) -> None:
        if self._decide_end is not None:
            state = self._decide_end(state)
        self._withdraw_offers()
        if self.unfinished:
            states = self.states
            claimed = self.claimed
            for node in range(len(states)):
                current = states[node]
                if current is _RUNNING:
                    self._set(node, _CANCELLED)
                    if node not in self.maps:  # a mapped task holds no slot
                        self.running -= 1
                elif current is _READY and node in claimed:
                    continue  # below, once the slot it took is free
                elif current is _EXCEPTION or current is _TIMED_OUT:
                    self._set(node, _CANCELLED)  # a retry was waiting
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
            self.expansions.clear()
            self.unfinished = 0
            self._ended_queue.clear()
        if failure is not None:
            self.failure = failure  # the job's own (an internal error, say)
        elif state is not JobState.FAILED and self.failure is not None:
            self.failure = None  # a cancel won over a task's failure
        self._set_job(state)
