"""Actors that own no thread: a mailbox drained by whoever brings it work.

A :class:`MailboxActor` is an actor in the actor model's sense (its own
mailbox, one message at a time, state only it touches) without an OS
thread of its own: starting a thread per job cost about 180 µs, more than
the whole of a small job. Its mailbox is drained by one thread at a time:

- ``tell`` (from threads that must not be held up: timers, tier callbacks,
  listener proxies) schedules the drain on the shared pool;
- ``tell_here`` drains it on the calling thread, if nobody is draining it
  already: a pool thread that just finished an attempt, ``Job.cancel()``,
  ``run()``. A thread that finds the mailbox being drained only leaves its
  message; the draining thread handles it.

A drain handles at most :data:`DRAIN_LIMIT` messages; if more are waiting,
the mailbox is handed to the pool, so no caller of ``cancel()`` and no
report path is held up by a long drain. The drain keeps the actor's
one-at-a-time rule: ``_draining`` is set and cleared under the lock, and
only the thread that set it drains.

The lock is the actor's one lock: subclasses guard with it what other
threads touch (see ``_offers.py``, ``_attempt.py``), and never hold it while
handling a message.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from daguerreo_actors._pool import Runnable, shared_pool

#: Messages one drain handles before it hands the mailbox to the pool.
#: A message costs a few µs, so a caller is held up for well under a
#: millisecond.
DRAIN_LIMIT = 64


class MailboxActor:
    """A mailbox drained on the sender's thread or the shared pool."""

    __slots__ = ("_draining", "_keep", "_kept", "_lock", "_mailbox")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mailbox: deque[Any] = deque()
        self._draining = False
        # While a drain runs on a pool thread that is free afterwards, the
        # first attempt the actor starts may be kept for that thread.
        self._keep = False
        self._kept: Runnable | None = None

    # -- sending -------------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Leave ``message``; the shared pool drains the mailbox if nobody does."""
        with self._lock:
            self._mailbox.append(message)
            if self._draining:
                return
            self._draining = True
        shared_pool().execute(self)

    def tell_here(self, message: Any) -> None:
        """Leave ``message`` and drain the mailbox on this thread if nobody does."""
        with self._lock:
            self._mailbox.append(message)
            if self._draining:
                return
            self._draining = True
        kept = self.drain(keep=False)
        assert kept is None

    def enqueue_locked(self, message: Any) -> bool:
        """Leave ``message``, the lock held; True if the caller must now ``drain``."""
        self._mailbox.append(message)
        if self._draining:
            return False
        self._draining = True
        return True

    # -- draining ------------------------------------------------------------

    def run(self) -> Runnable | None:
        """A drain scheduled on the pool; the thread is free afterwards."""
        return self.drain(keep=True)

    def drain(self, *, keep: bool) -> Runnable | None:
        """Handle messages (the caller set ``_draining``); returns work kept for this thread."""
        lock = self._lock
        mailbox = self._mailbox
        self._keep = keep
        self._kept = None
        handled = 0
        hand_off = False
        while True:
            with lock:
                if not mailbox or handled >= DRAIN_LIMIT:
                    # The kept item is taken, and keeping turned off, before
                    # _draining is cleared: the moment it is, another thread
                    # may start a drain and reset both (a kept start lost that
                    # way left its TaskActor scheduled forever: a hung job).
                    kept, self._kept = self._kept, None
                    self._keep = False
                    if mailbox:
                        hand_off = True  # still ours (_draining stays set): the pool goes on
                    else:
                        self._draining = False
                    break
                message = mailbox.popleft()
            handled += 1
            self._receive(message)  # never raises (the JobActor catches everything)
        if hand_off:
            # Only now: the next drain must not see this one's fields.
            shared_pool().execute(self)
        return kept

    def keep_or_dispatch(self, item: Runnable) -> None:
        """Run ``item`` on the draining thread after the drain if it may, else on the pool."""
        if self._keep and self._kept is None:
            self._kept = item
        else:
            shared_pool().execute(item)

    def _receive(self, message: Any) -> None:
        """Handle one message; must not raise."""
        raise NotImplementedError
