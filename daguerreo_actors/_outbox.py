"""The JobActor's outbox: the core's transitions turned into log entries and events.

After each message it handled, the JobActor flushes the transitions its
scheduler core recorded (:class:`~daguerreo_actors._scheduler.Transition`
records, in order, with the job's own transitions interleaved where they
happened). Each becomes, if its level is enabled, a structured log entry
(built here, written by the log writer's thread) and, if anyone listens, a
:class:`TaskEvent` or :class:`JobEvent` sent to every listener's proxy as
one ``EventBatch``, admitted against that listener's backlog (the job's
final JobEvent always goes). Nothing here calls user code.

An attempt's progress (its last ``is_active(progress)`` value) is noted by
:meth:`Outbox.ended` when its outcome is handled and rides on the next
transition out of RUNNING of that node (the event's ``progress``, the log
entry's short repr, made on the task's thread). While it runs, a changed
value is logged as ``task_progress`` (debug) from the task's own thread,
at most every :data:`PROGRESS_LOG_INTERVAL` seconds per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._events import Event, JobEvent, TaskEvent
from daguerreo_actors._messages import EventBatch
from daguerreo_actors._states import JobState, TaskState

if TYPE_CHECKING:
    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._clock import Clock
    from daguerreo_actors._graph import Graph
    from daguerreo_actors._journal import JobJournal
    from daguerreo_actors._listeners import ListenerLink
    from daguerreo_actors._logging import TransitionLog
    from daguerreo_actors._scheduler import Scheduler

_RUNNING = TaskState.RUNNING
_UNSCHEDULED = TaskState.UNSCHEDULED
_COMPLETED = TaskState.COMPLETED

_NO_PROGRESS: tuple[Any, str | None] = (None, None)

#: Seconds between two ``task_progress`` entries of one attempt (real time).
PROGRESS_LOG_INTERVAL = 0.5


class Outbox:
    """Log entries and events of one job; see the module docstring."""

    __slots__ = (
        "_clock",
        "_graph",
        "_job_id",
        "_journal",
        "_links",
        "_on_job",
        "_progress",
        "_run_started",
        "log",
        "progress_hook",
    )

    def __init__(
        self,
        job_id: str,
        graph: Graph,
        log: TransitionLog,
        clock: Clock,
        links: Sequence[ListenerLink],
        run_started: float,
        on_job: Callable[[JobState], None],
        journal: JobJournal | None = None,
    ) -> None:
        self._job_id = job_id
        self._graph = graph
        self.log = log
        self._clock = clock
        self._links = links
        self._run_started = run_started
        self._on_job = on_job
        self._journal = journal
        self._progress: dict[int, tuple[Any, str | None]] = {}
        #: Set on each attempt (``Attempt.on_progress``): None unless debug is logged.
        self.progress_hook: Callable[[Attempt], None] | None = (
            self._progress_changed if log.debug_enabled else None
        )

    def _progress_changed(self, attempt: Attempt) -> None:
        # On the task's thread; the entry is queued, never written here.
        now = real_monotonic()
        if now - attempt.progress_logged_at >= PROGRESS_LOG_INTERVAL:
            attempt.progress_logged_at = now
            self.log.task_progress(attempt.task, attempt.number, attempt.progress_text or "")

    def ended(self, attempt: Attempt) -> None:
        """The outcome of an attempt that gave a progress is handled: it goes on that transition."""
        self._progress[attempt.node] = (attempt.progress, attempt.progress_text)

    @property
    def listening(self) -> bool:
        return bool(self._links)

    def flush(
        self, core: Scheduler, started_at: Sequence[float], claimed_at: dict[int, float]
    ) -> None:
        """Log and send what the core recorded since the last flush."""
        transitions = core.take_transitions()
        job_transitions = core.take_job_transitions()
        names = self._graph.names
        log = self.log
        events: list[Event] | None = [] if self._links else None
        now = self._clock.time()
        mono = self._clock.monotonic()
        job_id = self._job_id
        journal = self._journal
        rows: list[list[Any]] | None = [] if journal is not None else None
        job_iter = iter(job_transitions)
        pending = next(job_iter, None)
        for position, t in enumerate(transitions):
            while pending is not None and pending[0] <= position:
                self._job(pending[1], pending[2], now, mono, events, rows)
                pending = next(job_iter, None)
            node, new = t.node, t.new
            ts = now
            if claimed_at and new is _RUNNING and node in claimed_at:
                # Started by the thread that took its offer, before we read it.
                ts = now - (mono - claimed_at.pop(node))
            progress: tuple[Any, str | None] = _NO_PROGRESS
            if self._progress and t.old is _RUNNING:
                progress = self._progress.pop(node, _NO_PROGRESS)
            if rows is not None and (new is not _COMPLETED or t.restored or t.mapped):
                # A completion is journaled with its output (``_commit.py``,
                # ``_cache.py``); a restored one is copied by ``open_job``; a
                # mapped task's output is its children's (``_resume_maps.py``).
                error = None if t.exception is None else type(t.exception).__name__
                rows.append([names[node], t.old.value, new.value, t.attempt, ts, t.reason, error])
            if log.enabled_for(new):
                old = t.old
                log.task(
                    names[node],
                    old,
                    new,
                    t.attempt,
                    ts,
                    result=t.result,
                    exception=t.exception,
                    detail=t.detail,
                    retry_in=t.retry_in,
                    reason=t.reason,
                    progress=progress[1],
                    restored=t.restored,
                    cached=t.cached,
                    duration=mono - started_at[node] if old is _RUNNING else None,
                    dependencies=(
                        [names[dep] for dep in self._graph.dependencies[node]]
                        if old is _UNSCHEDULED
                        else None
                    ),
                )
            if events is not None:
                events.append(
                    TaskEvent(
                        job_id,
                        names[node],
                        t.old,
                        new,
                        t.attempt,
                        ts,
                        t.result,
                        t.exception,
                        t.retry_in,
                        t.reason,
                        progress[0],
                        t.restored,
                        t.cached,
                    )
                )
        while pending is not None:
            self._job(pending[1], pending[2], now, mono, events, rows)
            pending = next(job_iter, None)
        if rows:
            assert journal is not None
            journal.post(rows)
        if journal is not None and core.ended:
            self._journal = None  # the end is written once
            journal.end(core.job_state.value, now)
        if events:
            self._send(events, final=core.ended)

    def _job(
        self,
        old: JobState,
        new: JobState,
        now: float,
        mono: float,
        events: list[Event] | None,
        rows: list[list[Any]] | None,
    ) -> None:
        if rows is not None:
            rows.append([None, old.value, new.value, 0, now, None, None])
        self._on_job(new)
        self.log.job(old, new, now, mono - self._run_started if new.is_terminal else None)
        if events is not None:
            events.append(JobEvent(self._job_id, old, new, now))

    def _send(self, events: list[Event], *, final: bool) -> None:
        # The job's final JobEvent is sent whatever the listener's backlog.
        forced = 1 if final else 0
        droppable = len(events) - forced
        batch = EventBatch(tuple(events))
        for position, link in enumerate(self._links):
            backlog = link.backlog
            dropped_before = backlog.dropped
            admitted = backlog.admit(droppable, forced)
            if admitted == droppable:
                message = batch
            else:
                message = EventBatch(tuple(events[:admitted]) + tuple(events[droppable:]))
                if dropped_before == 0:
                    self.log.listener_dropped(position, backlog.dropped, backlog.limit)
            link.send(message, admitted + forced)

    def close(self) -> None:
        """The job ended: report the drops, stop every proxy after its events."""
        for position, link in enumerate(self._links):
            if link.backlog.dropped:
                self.log.listener_dropped(
                    position, link.backlog.dropped, link.backlog.limit, final=True
                )
            link.release()
