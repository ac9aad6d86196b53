"""Listeners for people at a terminal: Daguerreo-style lines and a live progress display.

Both are ordinary listeners: each runs behind its own proxy actor, so
printing or redrawing never slows the job. Task names are printed with
control characters escaped (see ``_text.py``) and as plain ``rich.text.Text``,
never as markup.

The progress display counts only COMPLETED tasks as done; every other
terminal state (failed, cancelled, skipped, and whatever terminal states
the engine adds) is counted apart, by name. Its clock is the job's own
(from the events' timestamps), so the last line shows the job's real wall
time. Lines printed with :meth:`ProgressListener.print` go through the
display's console, above the live line, so the two never garble each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daguerreo_actors._clock import real_time
from daguerreo_actors._events import Event, JobEvent
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import cut, escape_controls, progress_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from daguerreo_actors._job import Job

#: Terminal task states shown under another name (a bad result is a failure).
_BUCKET = {TaskState.INVALID_RESULT: TaskState.FAILED.value}
#: Always shown, even at 0; the other terminal states only once they happen.
_ALWAYS = (TaskState.FAILED.value,)
#: The order the other terminal states are shown in: the failures first.
_ORDER = {
    name: i
    for i, name in enumerate(
        dict.fromkeys([*_ALWAYS, *(_BUCKET.get(s, s.value) for s in TaskState if s.is_terminal)])
    )
}
_JOB_STYLES = {
    JobState.COMPLETED: "bold green",
    JobState.FAILED: "bold red",
    JobState.TIMED_OUT: "bold yellow",
    JobState.CANCELLED: "bold yellow",
}
_NAME_LIMIT = 40
_PROGRESS_LIMIT = 50
_BAR_WIDTH = 20


def event_logger(print_fn: Callable[[str], Any] = print) -> Callable[[Event], None]:
    """A listener printing one Daguerreo-style line per event.

    ``JOB > idle -> running`` for the job, ``blend > ready -> running`` for
    a task; ``print_fn`` receives each line. Next to a progress display,
    pass ``print_fn=progress.print`` so both share one console.
    """

    def log(event: Event) -> None:
        who = "JOB" if isinstance(event, JobEvent) else escape_controls(event.task)
        print_fn(f"{who} > {event.old_state.value} -> {event.new_state.value}")

    return log


def format_elapsed(seconds: float) -> str:
    """``0.3s`` under a minute, ``1:02:03`` from then on."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class ProgressListener:
    """A live progress display: done/total, the clock, what runs, what failed.

    One line: the description, a bar and ``done/total`` (COMPLETED tasks
    only), the job's clock, the running tasks (the first ``show_running``
    by name, then ``+N``), the retrying ones, then failed and every other
    terminal state met (cancelled, skipped, ...); once the job has ended,
    its final state.

    Give ``total`` (the number of tasks) so the bar knows its length;
    the total grows past it as tasks become known (a mapped task's
    children), and without it, from zero. Draws on ``console``
    (default: stderr) while the job runs, redrawn ten times a second on a
    terminal, and prints the final line when the job ends (unless
    ``transient``). Pass one per job.

    :meth:`print` (and :attr:`console`) print through the display's console,
    above the live line: use ``event_logger(print_fn=progress.print)``.

    :meth:`follow` the job (``progress.follow(run(...))``) and the line also
    shows each shown running task's progress (its ``is_active(progress)``)
    and the attempts still running past their deadline (``overrunning``).
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        console: Console | None = None,
        transient: bool = False,
        description: str = "job",
        show_running: int = 3,
    ) -> None:
        # rich is imported here, not at import time: it is slow to import
        # and only the display needs it.
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self._console = console or Console(stderr=True)
        self._transient = transient
        self._live = Live(
            _LiveLine(self),
            console=self._console,
            transient=True,  # the final line is printed once, by _finish
            # Redrawn (the clock too) only where a redraw shows: a terminal.
            auto_refresh=self._console.is_interactive,
            refresh_per_second=10,
        )
        self._total = total
        self._description = escape_controls(description)
        self._show_running = max(0, show_running)
        # Lock order: _print_lock, then rich's (Live's) lock, then _lock.
        self._print_lock = threading.RLock()  # print() against start and stop
        self._lock = threading.Lock()  # the counts, against the redraws
        self._live_started = False
        self._finished = False
        self._known: set[str] = set()
        self._done = 0
        #: Running tasks, in the order they started.
        self._running: dict[str, None] = {}
        self._retrying: set[str] = set()
        self._retries = 0
        #: Terminal states other than COMPLETED: name -> count.
        self._ended: dict[str, int] = {}
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self.state: str = "idle"
        self._job: Job | None = None

    def follow(self, job: Job) -> Job:
        """Show ``job``'s progress values and stragglers too; returns the job."""
        self._job = job
        return job

    # -- printing through the display --------------------------------------------

    @property
    def console(self) -> Console:
        """The console the display draws on."""
        return self._console

    def print(self, line: str) -> None:
        """Print ``line`` as plain text (control characters escaped) above the display."""
        with self._print_lock:
            self._console.print(self._text(escape_controls(line)), soft_wrap=True)

    # -- what the display shows ----------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds since the job started (its wall time once it has ended)."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else real_time()
        return max(0.0, end - self._started_at)

    @property
    def counts(self) -> dict[str, int]:
        """Done (COMPLETED), running, retrying, and each other terminal state met."""
        with self._lock:
            return {
                "done": self._done,
                "running": len(self._running),
                "retrying": len(self._retrying),
                **self._ended_counts(),
            }

    @property
    def running(self) -> list[str]:
        """The running tasks, in the order they started."""
        with self._lock:
            return list(self._running)

    def line(self) -> Text:
        """The display's line as it stands."""
        job = self._job
        # Read off the job before taking our lock (it takes the job's).
        progress = job.progress() if job is not None else {}
        overrunning = len(job.stragglers()) if job is not None else 0
        with self._lock:
            return self._line(progress, overrunning)

    def _ended_counts(self) -> dict[str, int]:
        ended = {name: self._ended.get(name, 0) for name in _ALWAYS} | self._ended
        return dict(sorted(ended.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER))))

    def _line(self, progress: dict[str, object], overrunning: int) -> Text:
        # A mapped task's children are tasks too, known once they exist.
        known = len(self._known)
        total = known if self._total is None else max(self._total, known)
        text = self._text(no_wrap=True, overflow="ellipsis")
        text.append(self._description, style="bold")
        filled = min(_BAR_WIDTH, _BAR_WIDTH * self._done // total) if total else 0
        text.append(" ")
        text.append("━" * filled, style="green")
        text.append("━" * (_BAR_WIDTH - filled), style="grey37")
        text.append(f" {self._done}/{total}", style="green")
        text.append(f"  {format_elapsed(self.elapsed)}", style="yellow")
        text.append(f"  running {len(self._running)}")
        if self._running:
            names = list(self._running)
            shown = [_running(n, progress) for n in names[: self._show_running]]
            text.append(": " + ", ".join(shown), style="cyan")
            if len(names) > len(shown):
                text.append(f" +{len(names) - len(shown)}", style="cyan")
        text.append(f"  retrying {len(self._retrying)}")
        if overrunning:
            text.append(f"  overrunning {overrunning}", style="magenta")
        for name, count in self._ended_counts().items():
            text.append(f"  {name} {count}", style="red" if count else "")
        if self.state not in (JobState.IDLE.value, JobState.RUNNING.value):
            text.append("  ")
            text.append(self.state, style=_JOB_STYLES.get(JobState(self.state), ""))
        return text

    # -- the listener ------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobEvent):
            with self._lock:
                self.state = event.new_state.value
                if event.new_state is JobState.RUNNING or self._started_at is None:
                    self._started_at = event.timestamp
                if event.new_state.is_terminal:
                    self._ended_at = event.timestamp
            if event.new_state is JobState.RUNNING:
                self._start()
            elif event.new_state.is_terminal:
                self._finish()
            return
        with self._lock:
            self._task_event(event.task, event.old_state, event.new_state)

    def _task_event(self, task: str, old: TaskState, new: TaskState) -> None:
        self._known.add(task)
        if new is TaskState.RUNNING:
            self._running[task] = None
            self._retrying.discard(task)
        elif old is TaskState.RUNNING:
            self._running.pop(task, None)
        if new is TaskState.READY and old in (TaskState.EXCEPTION, TaskState.TIMED_OUT):
            self._retrying.add(task)
            self._retries += 1
        if new.is_terminal:
            self._retrying.discard(task)
            if new is TaskState.COMPLETED:
                self._done += 1
            else:
                name = _BUCKET.get(new, new.value)
                self._ended[name] = self._ended.get(name, 0) + 1

    def _start(self) -> None:
        with self._print_lock:
            if not self._live_started and not self._finished:
                self._live_started = True
                self._live.start(refresh=True)

    def _finish(self) -> None:
        # One step under the print lock: no line printed from another
        # thread can land between the live line's removal and the final line.
        with self._print_lock:
            if self._finished:
                return
            self._finished = True
            if self._live_started:
                self._live.stop()
            if not self._transient:
                self._console.print(self.line(), soft_wrap=True)


def _running(name: str, progress: dict[str, object]) -> str:
    shown = cut(escape_controls(name), _NAME_LIMIT)
    if name in progress:
        shown += f" ({escape_controls(cut(progress_text(progress[name]), _PROGRESS_LIMIT))})"
    return shown


class _LiveLine:
    """What the live display draws: the listener's line, built at each redraw."""

    def __init__(self, listener: ProgressListener) -> None:
        self._listener = listener

    def __rich__(self) -> Text:
        return self._listener.line()
