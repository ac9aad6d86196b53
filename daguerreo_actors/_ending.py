"""The end of a job: one resolve routine, with ordered, guarded steps.

Part of the JobActor (a mixin; its state is the JobActor's). Whatever ended
the job (its last task, a failure, cancel, the job timeout, an actor lost,
an internal error), it ends here, once: withdraw the offers and abandon
every attempt still running, build the :class:`JobResult` from the core's
books, resolve the :class:`Job` future (``get()`` returns now), close the
timers, the outbox (the listeners' proxies stop after their last events)
and the tiers. Each step is guarded: one that raises is logged as
``internal_error`` and the next still runs; if even the result cannot be
built, the Job resolves FAILED with an :class:`InternalError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from daguerreo_actors._commit import CommitSide
from daguerreo_actors._errors import InternalError
from daguerreo_actors._result import Failure, JobResult, KeyConflict
from daguerreo_actors._states import JobState
from daguerreo_actors._text import short_message

if TYPE_CHECKING:
    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._clock import TimerGroup
    from daguerreo_actors._job import Job
    from daguerreo_actors._scheduler import Scheduler
    from daguerreo_actors._task_actor import TaskActor
    from daguerreo_actors._tiers import Tier


class Ending(CommitSide):
    """The resolve routine of the JobActor (see the module docstring)."""

    __slots__ = ("_resolved",)

    _resolved: bool
    # The JobActor's.
    job: Job
    _core: Scheduler
    _names: list[str]
    _attempts: dict[int, Attempt]
    _actors: dict[int, TaskActor]
    _offered: dict[int, tuple[TaskActor, Attempt]]
    _conflicts: list[KeyConflict]
    _timers: TimerGroup
    _tiers: Sequence[Tier]

    def _carry_out(self, started: list[int]) -> None:
        raise NotImplementedError

    # -- the end: one resolve routine -----------------------------------------

    def _resolve(self, forced: InternalError | None = None) -> None:
        """Abandon what runs, resolve the Job, stop the children; each step guarded."""
        if self._resolved:
            return
        self._resolved = True
        self._step("offers.withdraw", self._withdraw)
        result = None
        if forced is None:
            result = self._step("result", self._result)
        if result is None:
            result = self._bare_result(forced or InternalError("the job's result was lost"))
        journal = self._journal
        resolve = self.job._resolve
        finish = getattr(self._ctx_log, "finish", None)
        if finish is not None:  # on a pool thread: fetch the ctx's values from the cluster
            resolve = functools.partial(_finish_then_resolve, finish, resolve)
        if journal is None:
            self._step("job.resolve", lambda: resolve(result))
        else:
            # get() returns once the journal holds everything of the job.
            self._step("journal.end", lambda: journal.end(result.state.value, self._clock.time()))
            self._step("job.resolve", lambda: journal.after_end(lambda: resolve(result)))
        self._step("timers.close", self._timers.close)
        self._step("outbox.close", self._outbox.close)
        for tier in {id(t): t for t in self._tiers}.values():
            self._step("tier.close", tier.close)
        with self._lock:
            self._stopped.notify_all()
            gone = not self._stragglers
        if gone:
            self._stragglers_gone()

    def _withdraw(self) -> None:
        if self._offers is not None:
            self._offers.withdraw()
        attempts = [*self._attempts.values(), *(pair[1] for pair in self._offered.values())]
        self._attempts.clear()
        self._actors.clear()
        self._offered.clear()
        now = self._clock.monotonic()
        for attempt in attempts:
            self._step("abandon", functools.partial(self._give_up, attempt, now))

    def _abandon(self, nodes: list[int]) -> None:
        # Attempts the core cancelled while the job goes on (on_failure="stop").
        freed: list[int] = []
        for node in nodes:
            attempt = self._attempts.pop(node, None)
            pair = self._offered.pop(node, None)
            self._actors.pop(node, None)
            now = self._clock.monotonic()
            for each in (attempt, None if pair is None else pair[1]):
                if each is not None:
                    self._step("abandon", functools.partial(self._give_up, each, now))
            if attempt is not None:
                freed += self._free_if_stopped(attempt)
        nodes.clear()
        if freed:
            self._carry_out(freed)

    def _free_if_stopped(self, attempt: Attempt) -> list[int]:
        raise NotImplementedError

    def _give_up(self, attempt: Attempt, at: float) -> bool:
        raise NotImplementedError

    def _stragglers_gone(self) -> None:
        raise NotImplementedError

    def _step(self, where: str, step: Any) -> Any:
        try:
            return step()
        except BaseException as exc:  # noqa: BLE001 - resolve the job whatever happens
            self._outbox.log.internal_error(where, exc)
            return None

    def _result(self) -> JobResult:
        core = self._core
        state = core.job_state if core.ended else JobState.FAILED
        failure = core.failure or Failure(None, None, None)
        return JobResult(
            state=state,
            ctx=core.final_ctx(),
            task_states=MappingProxyType(dict(zip(self._names, core.states, strict=True))),
            attempts=MappingProxyType(dict(zip(self._names, core.attempts, strict=True))),
            failed_task=failure.task,
            failure_reason=failure.reason,
            exception=failure.exception,
            invalid_result=failure.invalid_result,
            conflicts=tuple(self._conflicts),
            failures=tuple(core.failures),
            resumed_from=None if self._journal is None else self._journal.resumed_from,
        )

    def _bare_result(self, error: InternalError) -> JobResult:
        core = self._core
        return JobResult(
            state=JobState.FAILED,
            ctx=dict(core.initial_ctx),
            task_states=MappingProxyType(dict(zip(self._names, core.states, strict=False))),
            attempts=MappingProxyType(dict(zip(self._names, core.attempts, strict=False))),
            exception=error,
        )

    def _internal_error(self, where: str, exc: BaseException) -> None:
        """End the job FAILED with an InternalError; never raise."""
        error = InternalError(
            f"internal error in {where}: {type(exc).__name__}: {short_message(exc)}"
        )
        error.__cause__ = exc
        try:
            self._outbox.log.internal_error(where, exc)
            if not self._core.ended:
                self._core.end(JobState.FAILED, exception=error)
                self._carry_out([])
            else:
                # The core ended the job but carrying that out broke midway.
                self._resolve()
        except BaseException:  # noqa: BLE001 - the bookkeeping itself is broken
            self._resolved = False
            self._resolve(forced=error)


def _finish_then_resolve(
    finish: Callable[..., None], resolve: Callable[[JobResult], None], result: JobResult
) -> None:
    """``finish`` resolves the job when it is done; if it cannot even start, resolve
    now (a job is never left unresolved; resolving twice is a no-op)."""
    try:
        finish(result, then=resolve)
    except BaseException:
        resolve(result)
        raise
