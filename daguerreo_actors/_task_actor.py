"""TaskActor: the actor of one DAG node, hosted on the shared pool.

The JobActor creates a node's TaskActor when it first starts or offers the
node (see ``_offers.py`` for the bound on how many live at once) and drops
it when the node is done. A TaskActor is an actor in the actor model's own
sense, its own mailbox and one message at a time, but not a ``pykka.Actor``:
pykka would start a thread (200 µs+) and register it in its process-wide
registry for every node. Its mailbox runs on a pool thread (``_pool.py``).

Message flow: ``RunAttempt(attempt, ctx)`` in; the TaskActor hands the
:class:`~daguerreo_actors._attempt.Attempt` to its node's tier
(``_tiers.py``) and is the tier's :class:`~daguerreo_actors._tiers.Reporter`:
what the code returned or raised goes back to the JobActor through its
commit methods (``commit_returned`` and friends), which settle the
attempt's fate. An attempt that was abandoned before its turn came never
starts. The TaskActor holds no state of an attempt: that is the Attempt's.

A result is copied here, on the task's thread (``dict(result)``): the task
may go on mutating what it returned, and a mapping's ``__iter__`` or a
key's ``__hash__`` is user code that must run where it can delay only its
own task. A result that is not a mapping is INVALID_RESULT.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._errors import InvalidOutput, invalid_result_message
from daguerreo_actors._logging import log_outside
from daguerreo_actors._map_child import MapChild, child_output_error
from daguerreo_actors._pool import Runnable, shared_pool
from daguerreo_actors._task import TaskFn
from daguerreo_actors._tiers import Tier

if TYPE_CHECKING:
    from daguerreo_actors._job_actor import JobActor


@dataclasses.dataclass(frozen=True, slots=True)
class RunAttempt:
    attempt: Attempt
    ctx: Mapping[Any, Any]


class TaskActor:
    """Runs the attempts of one node; see the module docstring."""

    __slots__ = (
        "_job",
        "_lock",
        "_mailbox",
        "_retry_on",
        "_scheduled",
        "fn",
        "name",
        "node",
        "tier",
    )

    def __init__(
        self,
        node: int,
        name: str,
        fn: TaskFn,
        tier: Tier,
        job: JobActor,
        retry_on: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self.node = node
        #: The retry policy's judge of exceptions, when it has one (user code).
        self._retry_on = retry_on
        self.name = name
        self.fn = fn
        self.tier = tier
        self._job = job
        self._lock = threading.Lock()
        self._mailbox: deque[RunAttempt] = deque()
        self._scheduled = False

    # -- the actor interface ---------------------------------------------

    def tell(self, message: RunAttempt) -> None:
        """Leave a message; the pool runs the mailbox."""
        if self.accept(message):
            shared_pool().execute(self)

    def accept(self, message: RunAttempt) -> bool:
        """Leave a message; True if the caller must now run the mailbox (or hand it on)."""
        with self._lock:
            self._mailbox.append(message)
            if self._scheduled:
                return False
            self._scheduled = True
            return True

    def run(self) -> Runnable | None:
        """Drain the mailbox on a pool thread; returns work for this thread to run next."""
        lock = self._lock
        mailbox = self._mailbox
        following: Runnable | None = None
        while True:
            with lock:
                if not mailbox:
                    self._scheduled = False
                    return following
                message = mailbox.popleft()
            attempt = message.attempt
            # Before begin(): an attempt abandoned while it waits never starts.
            if attempt.after >= 0 and not self._inputs_durable(attempt):
                continue
            if not attempt.begin():
                continue  # abandoned before its turn: never starts
            ctx = message.ctx
            if attempt.reads is True:
                from daguerreo_actors._cache_reads import ReadTracker

                ctx = attempt.reads = ReadTracker(ctx)
            try:
                following = self.tier.start(attempt, self.fn, ctx, self) or following
            except BaseException as exc:  # noqa: BLE001 - a bug of ours: fail the job, never hang
                self._job.code_done(attempt)
                self._job.internal_failure(f"task_actor {self.name!r}", exc)

    def _inputs_durable(self, attempt: Attempt) -> bool:
        """With a journal: wait until the dependencies' outputs are committed."""
        journal = self._job._journal
        try:
            if journal is not None:
                journal.inputs_durable(attempt.node)
        except BaseException as exc:  # noqa: BLE001 - the disk: this attempt fails
            self._job.commit_raised(attempt, exc, here=False, retryable=False)
            return False
        return True

    # -- the Reporter interface (any thread) ---------------------------------

    def returned(self, attempt: Attempt, value: Any, *, here: bool = False) -> Runnable | None:
        try:
            if type(value) is dict or isinstance(value, Mapping):
                output = dict(value)
                if type(self.fn) is MapChild:  # collected by its parent: str keys
                    reason = child_output_error(self.name, output)
                    if reason is not None:
                        return self._job.commit_invalid(attempt, value, reason, here=here)
                    return self._job.commit_returned(attempt, output, here=here, merge=False)
            elif type(value) is InvalidOutput:  # a dag task's wrong-shaped return
                return self._job.commit_invalid(attempt, value.value, value.reason, here=here)
            else:
                reason = invalid_result_message(self.name, value)
                return self._job.commit_invalid(attempt, value, reason, here=here)
        except BaseException as exc:  # noqa: BLE001 - a mapping whose copy raises
            return self._job.commit_raised(attempt, exc, here=here)
        return self._job.commit_returned(attempt, output, here=here)

    def raised(
        self, attempt: Attempt, exc: BaseException, *, here: bool = False
    ) -> Runnable | None:
        retryable = True
        if self._retry_on is not None:
            # The policy's retry_on is user code: judged here, on the task's
            # thread; if it raises, the exception is not retried.
            try:
                retryable = self._retry_on(exc)
            except BaseException as error:  # noqa: BLE001
                retryable = False
                log_outside(
                    logging.WARNING,
                    "retry_on_failed",
                    job_id=self._job.job.id,
                    task=self.name,
                    attempt=attempt.number,
                    exc=error,
                )
        return self._job.commit_raised(attempt, exc, here=here, retryable=retryable)

    def not_run(self, attempt: Attempt) -> None:
        self._job.commit_not_run(attempt)
