"""The task-thread side of the JobActor: committing an attempt's outcome.

A tier reports an attempt's outcome on whatever thread learns it; the
TaskActor passes it to one of these commit methods, still on that thread.
A commit settles the attempt's fate and leaves the report in the JobActor's
mailbox in one step under the actor's lock, so an attempt abandoned first
(a timeout, the job's end) is never reported as done, and its result never
merged.

A result is merged here, into the job's ctx book (``_ctx.py``: the ctx
snapshot and who wrote each key). The merge calls the keys' ``__hash__``
and ``__eq__``, user code, so it runs on the task's thread, before the lock
is taken: optimistically against the book of the moment, and again if
another result was merged meanwhile. Whatever a key raises makes that
task's result INVALID_RESULT; nothing is half-merged (a HAMT update builds
a new map or nothing). A key another independent task wrote too is a
conflict: reported with the result, or (``on_conflict="error"``) an
INVALID_RESULT naming the key and the other task.

The reporting thread then drains the mailbox itself if nobody is draining
it, and, if it is a pool thread that ran the code (``here``), takes the
next offer (``_offers.py``) or the first node its drain starts, and runs it
next. Any other thread (a tier's callback, the event loop) hands the drain
to the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import ABANDONED, ACTIVE, Attempt
from daguerreo_actors._cache_reads import ReadTracker
from daguerreo_actors._mailbox import MailboxActor
from daguerreo_actors._messages import CodeReturned, InternalFailure, Invalid, Raised, Succeeded
from daguerreo_actors._pool import Runnable, shared_pool
from daguerreo_actors._task_actor import RunAttempt, TaskActor
from daguerreo_actors._text import cut, safe_repr, short_message

if TYPE_CHECKING:
    from daguerreo_actors._clock import Clock
    from daguerreo_actors._ctx import CommitLog, CtxBook
    from daguerreo_actors._graph import Graph
    from daguerreo_actors._journal import JobJournal
    from daguerreo_actors._offers import Offers
    from daguerreo_actors._outbox import Outbox


class CommitSide(MailboxActor):
    """The commit methods of the JobActor (see the module docstring)."""

    __slots__ = ("_book", "_committing", "_ctx_log", "_journal", "_stopped", "_stragglers")

    # The ctx snapshot and its writers, swapped (never changed) under the
    # lock; the rest is the JobActor's.
    _book: CtxBook
    #: Attempts abandoned while their code runs (``_overrun.py``), under the lock.
    _stragglers: dict[Attempt, None]
    _stopped: threading.Condition
    _graph: Graph
    _on_conflict: str
    _offers: Offers | None
    _clock: Clock
    _outbox: Outbox
    #: Told of each merge, in order (the Dask tier's ctx log), or None.
    _ctx_log: CommitLog | None
    #: The job's journal (``_journal.py``), or None; outputs being committed to it.
    _journal: JobJournal | None
    _committing: int

    def commit_returned(
        self, attempt: Attempt, output: dict[Any, Any], *, here: bool, merge: bool = True
    ) -> Runnable | None:
        """The attempt returned ``output``: merge it and report, unless it was abandoned.

        A mapped task's child's output is not merged (``merge``): its parent
        collects it (``_maps.py``).

        With a journal, the output is serialized first (an error fails the
        attempt) and, once its fate is settled, queued for the journal with
        its COMPLETED transition: the journal's batch holding it must be
        committed before any dependent starts (``Attempt.after``).
        """
        journal = self._journal
        blob: bytes | str = b""
        reads: bytes | str | None = None
        if journal is not None:
            try:
                blob = journal.encode(attempt.task, output)  # user code
            except BaseException as exc:  # noqa: BLE001 - charged to this task
                return self.commit_raised(attempt, exc, here=here, retryable=False)
            if isinstance(attempt.reads, ReadTracker):  # a caching task: what it read
                reads = journal.encode_reads(attempt.task, attempt.reads)
        schedule = False
        while True:
            base = self._book
            try:
                book, conflicts = (
                    base.merged(output, attempt.node, self._graph)  # user code
                    if merge
                    else (base, [])
                )
            except BaseException as exc:  # noqa: BLE001 - charged to this task
                reason = _merge_error(attempt.task, output, exc)
                return self.commit_invalid(attempt, output, reason, here=here)
            if conflicts and self._on_conflict == "error":
                reason = self._conflict_error(attempt.task, conflicts[0])
                return self.commit_invalid(attempt, output, reason, here=here)
            with self._lock:
                if self._book is not base and attempt.fate == ACTIVE:
                    continue  # another result was merged meanwhile: merge again
                if not attempt.finish_locked():
                    break
                self._swap_locked(book, output, attempt)
                if journal is not None:
                    _batch, schedule = journal.completed(
                        attempt.node, attempt.number, blob, self._clock.time(), reads
                    )
                drain, taken = self._succeed_locked(attempt, output, conflicts, here)
            if schedule:
                journal.schedule()  # type: ignore[union-attr]
            if taken is not None:
                actor, taken_attempt = taken
                taken_attempt.ctx_commits = book.commits
                actor.accept(RunAttempt(taken_attempt, book.snapshot))
            return self._after_commit(drain, here and taken is None, taken)
        self._late(attempt, discarded=True)
        return None

    def _swap_locked(
        self, book: CtxBook, output: Mapping[Any, Any], attempt: Attempt | None
    ) -> None:
        """Make ``book`` the job's (the lock held); the ctx log first, so that
        whoever reads the new book finds its entries there."""
        if self._ctx_log is not None and book is not self._book:
            self._ctx_log.committed(output, attempt)
        self._book = book

    def _succeed_locked(
        self, attempt: Attempt, output: dict[Any, Any], conflicts: list[Any], here: bool
    ) -> tuple[bool, tuple[TaskActor, Attempt] | None]:
        """Queue the success (the lock held), taking the next offer if this thread may."""
        taken = self._offers.take_locked() if here and self._offers is not None else None
        if taken is not None:
            taken[1].started_at = self._clock.monotonic()
        drain = self.enqueue_locked(
            Succeeded(attempt, output, None if taken is None else taken[1], tuple(conflicts))
        )
        return drain, taken

    def commit_raised(
        self, attempt: Attempt, exc: BaseException, *, here: bool, retryable: bool = True
    ) -> Runnable | None:
        return self._commit(attempt, Raised(attempt, exc, retryable), here)

    def commit_invalid(
        self, attempt: Attempt, value: Any, reason: str | None, *, here: bool
    ) -> Runnable | None:
        return self._commit(attempt, Invalid(attempt, value, reason), here)

    def commit_not_run(self, attempt: Attempt) -> None:
        # Ours abandon first; if the attempt is still wanted, something else
        # cancelled it (a coroutine that cancelled itself): a failure.
        error = RuntimeError(f"task {attempt.task!r}: its attempt was cancelled before it finished")
        self._commit(attempt, Raised(attempt, error), False)

    def _conflict_error(self, task: str, conflict: tuple[Any, int]) -> str:
        key, other = conflict
        return (
            f"task {task!r}: its result writes the key {cut(safe_repr(key), 100)}, which "
            f"task {self._graph.names[other]!r} wrote too, and neither depends on the "
            "other (on_conflict='error')"
        )

    def code_done(self, attempt: Attempt) -> None:
        """An attempt's code is over without a report (a bug of ours broke it)."""
        with self._lock:
            attempt.returned = True
            self._stragglers.pop(attempt, None)
            self._stopped.notify_all()

    def internal_failure(self, where: str, exc: BaseException) -> None:
        """A bug of ours outside the JobActor (a TaskActor): fail the job clearly."""
        self.tell(InternalFailure(where, exc))

    def _commit(self, attempt: Attempt, message: Any, here: bool) -> Runnable | None:
        with self._lock:
            if not attempt.finish_locked():
                drain = None
            else:
                drain = self.enqueue_locked(message)
        if drain is None:
            self._late(attempt)
            return None
        return self._after_commit(drain, here, None)

    def _late(self, attempt: Attempt, discarded: bool = False) -> None:
        """The code of an attempt that was no longer wanted is done: logged, never merged."""
        self._outbox.log.late_result(attempt.task, attempt.number)
        with self._lock:
            straggled = attempt in self._stragglers
        if straggled:
            # Logged before the list lets go of it: whoever wait_stopped()
            # for it finds the entry queued.
            past = self._clock.monotonic() - (attempt.abandoned_at or 0.0)
            self._outbox.log.attempt_overran(attempt.task, attempt.number, past, discarded)
        with self._lock:
            self._stragglers.pop(attempt, None)
            self._stopped.notify_all()
        if attempt.fate == ABANDONED:
            # What it held (a slot, resources, its retry) is free now.
            self.tell(CodeReturned(attempt))

    def _after_commit(
        self, drain: bool, keep: bool, taken: tuple[TaskActor, Attempt] | None
    ) -> Runnable | None:
        kept = None
        if drain:
            if keep or taken is not None:
                kept = self.drain(keep=keep)
            else:
                shared_pool().execute(self)
        return taken[0] if taken is not None else kept


def _merge_error(task: str, output: Mapping[Any, Any], exc: BaseException) -> str:
    types = sorted({type(key).__name__ for key in output if type(key) is not str})
    keys = f"a key of type {', '.join(types)}" if types else "a key"
    return (
        f"task {task!r}: its result could not be merged into the ctx: {keys} raised "
        f"{type(exc).__name__}: {short_message(exc)}"
    )
