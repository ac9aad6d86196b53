"""Offers: a thread that frees a slot starts the next READY node itself.

Why: with no-op tasks almost all of a job's cost was thread hand-offs (a
pool thread slept after each task until the JobActor dispatched the next).
So the JobActor *offers* the head of its ready queue: it publishes up to
``OFFERS_PER_SLOT * max_concurrency`` READY nodes, each with its TaskActor
and :class:`~daguerreo_actors._attempt.Attempt` made in advance, topped up
once half of them are taken (in batches: topping up after every report
cost a call chain per task). A pool
thread whose attempt finished while still wanted has freed a slot, so it may
take the first offer and run it at once. This is the one explanation; the
core (``_scheduler.py``) and the shell (``_job_actor.py``, ``_task_actor.py``)
point here.

The rules, and who keeps them:

- Offers are a prefix of the core's ready FIFO (``Scheduler.offered``) and
  leave it only from the left, so queue order and the concurrency limit
  hold exactly as without them.
- Taking an offer and leaving the report that names it (``Succeeded(...,
  taken=...)``) in the JobActor's mailbox are one step under the JobActor's
  lock (:meth:`Offers.take_locked`, called by the task thread's commit), so
  the JobActor reads claims in the order offers were taken and RUNNING
  events follow READY order.
- The core records the start when it reads the report (READY -> RUNNING in
  the slot the report frees). Before it starts an offered node any other
  way it takes the offer back (``revoke``); if a thread took it first, the
  node waits in ``Scheduler.claimed`` until the report naming it is read,
  and meanwhile the core starts nothing else: the node is ahead in the
  queue, and its report is already in the mailbox (taken and enqueued in
  one step), so the slots left free are refilled as soon as it is read.
- Ending the job withdraws every offer; a node already taken did start, so
  it goes READY -> RUNNING -> CANCELLED, and its attempt is abandoned (the
  JobActor holds every offered attempt) so its code never runs.
- The ctx a taken node gets is the JobActor's latest snapshot, which the
  taking thread's commit just updated with its own output: what the
  JobActor would have handed it after merging that output.

Bound: live TaskActors of a job are at most ``max_concurrency`` running
plus the published offers, ``max_concurrency * (OFFERS_PER_SLOT + 1)`` in
all, plus attempts abandoned while their code still runs (a timed-out
task that ignores ``is_active()``).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._task_actor import TaskActor

#: How many offers per slot the JobActor keeps published. A thread that
#: takes offers back to back runs ahead of the JobActor, which reads its
#: reports in batches; offers run dry when the chain outruns this depth.
#: Measured on 10k no-op tasks, max_concurrency=2 (docs/benchmarks.md): at
#: 2 offers per slot a thread still slept on every fifth task, at 16 on one
#: in seventeen.
OFFERS_PER_SLOT = 16


class Offers:
    """The published offers of one job, in ready-queue order."""

    __slots__ = ("_lock", "_queue")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock  # the JobActor's
        self._queue: deque[tuple[TaskActor, Attempt]] = deque()

    def publish(self, offers: list[tuple[TaskActor, Attempt]]) -> None:
        """Offer (actor, attempt) pairs, in ready-queue order."""
        with self._lock:
            self._queue.extend(offers)

    def take_locked(self) -> tuple[TaskActor, Attempt] | None:
        """The first offer, for a thread that freed a slot (the lock held)."""
        queue = self._queue
        return queue.popleft() if queue else None

    def revoke(self, node: int) -> bool:
        """Take back the offer of ``node``: False if a thread took it first.

        ``node`` is always the oldest offer the JobActor has not seen taken;
        offers leave from the left, so if it is not first it was taken.
        """
        with self._lock:
            queue = self._queue
            if queue and queue[0][1].node == node:
                queue.popleft()
                return True
            return False

    def withdraw(self) -> None:
        """The job ended: no offer may be taken any more."""
        with self._lock:
            self._queue.clear()
