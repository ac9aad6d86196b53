"""The :class:`Attempt` record: everything about one attempt of one task, in one place.

The JobActor makes an Attempt when it starts a node (or offers it, see
``_offers.py``); the TaskActor hands it to a tier, which runs the code and
attaches its typed :class:`Handle`; the deadline timer and the job's end
abandon it; ``is_active`` is its bound method, handed to the task function.
Nobody keeps a copy of any of this: the scheduler core keeps only the
attempt's number, to tell a current report from a stale one.

The fate of an attempt is settled once, under the job's lock: it either
*finishes* (its code returned or raised and the report is on its way) or is
*abandoned* (a timeout, the job's end). ``is_active()`` is True only while
neither happened. An attempt abandoned before its code started never starts;
one abandoned while it runs is told through its handle (a flag in shared
memory, a cancelled future or coroutine), and whatever it returns later is
discarded, never merged.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Protocol

from daguerreo_actors._text import progress_text

ACTIVE = 0
FINISHED = 1
ABANDONED = 2


class Handle(Protocol):
    """Where a tier runs an attempt; ``cancel`` carries an abandon there.

    A handle whose tier can stop running code by force also has ``kill()``
    (see :meth:`Attempt.kill`).
    """

    def cancel(self) -> None: ...


class Attempt:
    """One attempt of one task; see the module docstring."""

    __slots__ = (
        "_clock",
        "_lock",
        "abandoned_at",
        "after",
        "ctx_commits",
        "deadline",
        "fate",
        "handle",
        "last_beat",
        "node",
        "number",
        "on_progress",
        "parked",
        "progress",
        "progress_logged_at",
        "progress_text",
        "reads",
        "returned",
        "started",
        "started_at",
        "task",
    )

    def __init__(
        self,
        node: int,
        number: int,
        task: str,
        lock: threading.Lock,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.node = node
        self.number = number
        self.task = task
        #: When the attempt started (the job clock's monotonic seconds).
        self.started_at = 0.0
        #: When it times out (monotonic), or None.
        self.deadline: float | None = None
        #: Where a tier runs it, once attached.
        self.handle: Handle | None = None
        self.fate = ACTIVE
        self._lock = lock
        #: Its code began (a tier got it), and has returned (or raised) since.
        self.started = False
        self.returned = False
        #: When it was abandoned (monotonic; the deadline for a timeout).
        self.abandoned_at: float | None = None
        #: With a heartbeat (``clock`` given): when ``is_active`` was last called.
        self._clock = clock
        self.last_beat = 0.0
        #: The last ``progress`` given to ``is_active``, and its short repr
        #: (made on the task's thread: a user ``__repr__`` delays only its task).
        self.progress: object = None
        self.progress_text: str | None = None
        #: Called (on the task's thread) when the progress changes: the log's hook.
        self.on_progress: Callable[[Attempt], None] | None = None
        self.progress_logged_at = -math.inf
        #: Its code waits in ``VirtualClock.sleep`` (``testing.py``).
        self.parked = False
        #: A caching task's: True until the TaskActor wraps its ctx, then the
        #: ``ReadTracker`` (``_cache.py``); None for the others.
        self.reads: object = None
        #: With a journal: the journal batch that must be committed before it
        #: starts (its dependencies' outputs; -1: none).
        self.after = -1
        #: How many outputs its ctx snapshot holds (``CtxBook.commits``).
        self.ctx_commits = 0

    def __repr__(self) -> str:
        fate = ("active", "finished", "abandoned")[self.fate]
        return f"<Attempt {self.task!r} #{self.number} {fate}>"

    def is_active(self, progress: object = None) -> bool:
        """True while the attempt is still wanted: poll it in long loops.

        ``progress`` (any small value) is kept as the attempt's progress, for
        the progress display, the log and the report.
        """
        if progress is not None and progress is not self.progress:
            self.progress = progress
            self.progress_text = progress_text(progress)
            if self.on_progress is not None:
                self.on_progress(self)
        if self._clock is not None:
            self.last_beat = self._clock()  # a heartbeat: the attempt is alive
        return self.fate == ACTIVE

    def begin(self) -> bool:
        """Its code is about to run: False if it was abandoned first (it never runs)."""
        with self._lock:
            if self.fate != ACTIVE:
                return False
            self.started = True
            if self._clock is not None:
                self.last_beat = self._clock()
            return True

    def straggling(self) -> bool:
        """Abandoned while its code runs, and not returned yet (the lock held)."""
        return self.fate == ABANDONED and self.started and not self.returned

    def kill(self) -> bool:
        """Stop the code by force where its tier can; True if something was done."""
        handle = self.handle
        kill = getattr(handle, "kill", None)
        if kill is None:
            return False
        kill()
        return True

    def finish(self) -> bool:
        """Its code is done: True if it was still wanted (its report counts)."""
        with self._lock:
            return self.finish_locked()

    def finish_locked(self) -> bool:
        """``finish``, for a caller that holds the job's lock; the code has returned."""
        self.returned = True
        if self.fate != ACTIVE:
            return False
        self.fate = FINISHED
        return True

    def abandon(self, at: float | None = None) -> bool:
        """No longer wanted (at ``at``, monotonic): False if it had finished."""
        with self._lock:
            abandoned, handle = self.abandon_locked(at)
        if handle is not None:
            handle.cancel()
        return abandoned

    def abandon_locked(self, at: float | None = None) -> tuple[bool, Handle | None]:
        """``abandon``, the lock held: (abandoned?, the handle the caller must cancel)."""
        if self.fate == FINISHED:
            return False, None
        if self.fate == ACTIVE:
            self.abandoned_at = at
        self.fate = ABANDONED
        return True, self.handle

    def attach(self, handle: Handle, before: Callable[[], None] | None = None) -> bool:
        """Record where the attempt runs, unless it was abandoned meanwhile.

        A tier calls this once it has handed the attempt over (``before``
        runs under the same lock, e.g. to raise the attempt's flag). False
        means the attempt was abandoned (or finished) during the hand-over:
        the tier must then cancel it itself, since ``abandon`` found no
        handle to cancel.
        """
        with self._lock:
            if self.fate != ACTIVE:
                return False
            if before is not None:
                before()
            self.handle = handle
            return True
