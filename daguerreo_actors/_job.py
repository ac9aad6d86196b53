"""What the caller holds: the :class:`Job` future.

The JobActor makes its Job (``Job(job_id, actor, links)``) and is the only
writer of its state, through three methods: ``_claim_end``, ``_set_state``
and ``_resolve``. The Job is shared between the JobActor's drains and the
caller's threads, so the few things both sides touch go through one lock:

- the *end claim*: the first of the JobActor (completing, failing, timing
  out) and :meth:`Job.cancel` to claim the end decides the final state.
  ``cancel()`` returns True exactly when its claim won;
- done callbacks, used by ``await job``.

Waits of the caller (``get``, ``cancel``, ``wait_for_listeners``) run in
real time, whatever clock the job runs on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import pykka

from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._logwriter import flush as flush_log
from daguerreo_actors._messages import CancelJob
from daguerreo_actors._result import JobResult, Straggler
from daguerreo_actors._states import JobState

if TYPE_CHECKING:
    from daguerreo_actors._job_actor import JobActor
    from daguerreo_actors._listeners import ListenerLink

#: How long ``cancel()`` waits for the JobActor to carry a cancel out. It
#: never runs user code, so this is only reached if the engine is broken.
CANCEL_WAIT = 10.0


class Job(pykka.ThreadingFuture[JobResult]):
    """A running (or finished) job; ``get()`` returns its :class:`JobResult`.

    ``get(timeout=None)`` raises ``pykka.Timeout`` if the job is not done in
    time; ``await job`` works in asyncio code without blocking the loop.
    """

    def __init__(self, job_id: str, actor: JobActor, links: Sequence[ListenerLink]) -> None:
        super().__init__()
        self._id = job_id
        self._state = JobState.IDLE
        self._lock = threading.Lock()
        self._end_claim: JobState | None = None
        self._done = False
        self._callbacks: list[Callable[[], None]] = []
        self._actor = actor
        self._links = tuple(links)

    def __repr__(self) -> str:
        return f"<Job {self._id} {self._state.value}>"

    @property
    def id(self) -> str:
        """The job's unique id."""
        return self._id

    @property
    def state(self) -> JobState:
        """The job's current state."""
        return self._state

    def done(self) -> bool:
        """True once the job has ended and its result is available."""
        return self._done

    def cancel(self) -> bool:
        """Cancel the job; True if this call ended it, False if it had ended.

        Tasks that have not started are SKIPPED; running ones are CANCELLED
        and their ``is_active()`` turns False (their threads are not killed;
        whatever they return later is discarded). A second cancel is a no-op.
        """
        with self._lock:
            if self._end_claim is not None:
                return False
            self._end_claim = JobState.CANCELLED
        self._actor.tell_here(CancelJob())
        try:
            self.get(timeout=CANCEL_WAIT)
        except pykka.Timeout:  # pragma: no cover - only with a broken engine
            pass
        return True

    def stragglers(self) -> tuple[Straggler, ...]:
        """Attempts abandoned (timed out, or the job ended) whose code still runs.

        Also after the job ended: Python cannot stop a thread, so a task
        that ignores ``is_active()`` runs on (see ``kill_after``).
        """
        return self._actor.stragglers()

    def progress(self) -> dict[str, object]:
        """The running tasks' last ``is_active(progress)`` values, by task name.

        Only tasks that gave one; a process or Dask worker's stays there.
        """
        return self._actor.progress()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the job ended and every attempt's code has returned.

        Returns False if ``timeout`` seconds (real time) passed first.
        """
        return self._actor.wait_stopped(timeout)

    @property
    def dropped_events(self) -> tuple[int, ...]:
        """Per listener (in ``run``'s order), events dropped for its backlog.

        Non-zero only for a listener that fell more than
        ``LISTENER_BACKLOG_LIMIT`` events behind; see the README.
        """
        return tuple(link.backlog.dropped for link in self._links)

    def wait_for_listeners(self, timeout: float | None = None) -> bool:
        """Wait until every listener has consumed all of this job's events.

        ``get()`` never waits for listeners (a slow listener delays nobody
        but itself); call this when you need their side effects. It also
        waits until the job's log entries are written (the engine writes
        them on a thread of its own), and, with a journal, until the job's
        end is written to it. Returns False if ``timeout`` seconds passed
        first.
        """
        deadline = None if timeout is None else real_monotonic() + timeout
        for link in self._links:
            remaining = None if deadline is None else max(0.0, deadline - real_monotonic())
            if not link.done.wait(remaining):
                return False
        journal = self._actor._journal
        if journal is not None:
            remaining = None if deadline is None else max(0.0, deadline - real_monotonic())
            if not journal.closed.wait(remaining):
                return False
        remaining = None if deadline is None else max(0.0, deadline - real_monotonic())
        return flush_log(remaining)

    def __await__(self) -> Generator[Any, None, JobResult]:
        # pykka's Future.__await__ blocks the event loop in get(); wake the
        # awaiting task from the JobActor's thread instead.
        if not self._done:
            import asyncio  # only awaiting needs it (24 ms to import)

            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            def callback() -> None:
                try:
                    loop.call_soon_threadsafe(wake)
                except RuntimeError:  # the loop was closed meanwhile
                    pass

            self._add_done_callback(callback)
            yield from waiter.__await__()
        result: JobResult = self.get(timeout=0)
        return result

    # -- used by the JobActor ------------------------------------------------

    def _claim_end(self, state: JobState) -> JobState:
        with self._lock:
            if self._end_claim is None:
                self._end_claim = state
            return self._end_claim

    def _set_state(self, state: JobState) -> None:
        self._state = state

    def _resolve(self, result: JobResult) -> None:
        with self._lock:
            if self._done:
                return
            self._state = result.state
            self.set(result)
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def _add_done_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback()


def cancel(job: Job) -> bool:
    """Cancel ``job``; the same as ``job.cancel()``."""
    return job.cancel()
