"""Listeners for people at a terminal: Daguerreo-style lines and a live progress bar.

Both are ordinary listeners: each runs behind its own proxy actor, so
printing or redrawing never slows the job. Task names are printed with
control characters escaped (see ``_text.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daguerreo_actors._events import Event, JobEvent
from daguerreo_actors._states import TaskState
from daguerreo_actors._text import escape_controls

if TYPE_CHECKING:
    from rich.console import Console

_FAILED = frozenset({TaskState.FAILED, TaskState.INVALID_RESULT})


def event_logger(print_fn: Callable[[str], Any] = print) -> Callable[[Event], None]:
    """A listener printing one Daguerreo-style line per event.

    ``JOB > idle -> running`` for the job, ``blend > ready -> running`` for
    a task; ``print_fn`` receives each line.
    """

    def log(event: Event) -> None:
        who = "JOB" if isinstance(event, JobEvent) else escape_controls(event.task)
        print_fn(f"{who} > {event.old_state.value} -> {event.new_state.value}")

    return log


class ProgressListener:
    """A live progress display: done/total, running, retrying, failed.

    Give ``total`` (the number of tasks) so the bar knows its length;
    without it the total grows as tasks become known. Draws on ``console``
    (default: stderr) while the job runs and leaves the final state on
    screen (unless ``transient``). Pass one per job.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        console: Console | None = None,
        transient: bool = False,
        description: str = "job",
    ) -> None:
        # rich is imported here, not at import time: it is slow to import
        # and only the display needs it.
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=transient,
        )
        self._total = total
        # The description column is rendered as markup: "[" must stay text.
        self._description = escape(escape_controls(description))
        self._bar: Any = None
        self._known: set[str] = set()
        self._done = 0
        self._running = 0
        self._retrying: set[str] = set()
        self._retries = 0
        self._failed = 0
        self.state: str = "idle"

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobEvent):
            self.state = event.new_state.value
            if event.new_state.value == "running":
                self._start()
            elif event.new_state.is_terminal:
                self._update()
                self._progress.stop()
            return
        self._known.add(event.task)
        new, old = event.new_state, event.old_state
        if new is TaskState.RUNNING:
            self._running += 1
            self._retrying.discard(event.task)
        elif old is TaskState.RUNNING:
            self._running -= 1
        if new is TaskState.READY and old in (TaskState.EXCEPTION, TaskState.TIMED_OUT):
            self._retrying.add(event.task)
            self._retries += 1
        if new.is_terminal:
            self._done += 1
            self._retrying.discard(event.task)
            if new in _FAILED:
                self._failed += 1
        self._update()

    def _start(self) -> None:
        if self._bar is None:
            self._progress.start()
            self._bar = self._progress.add_task(
                self._description, total=self._total, status=self._status()
            )

    def _status(self) -> str:
        return (
            f"running {self._running}  retrying {len(self._retrying)}"
            f"  failed {self._failed}  [dim]{self.state}[/dim]"
        )

    def _update(self) -> None:
        if self._bar is None:
            return
        total = self._total if self._total is not None else len(self._known)
        self._progress.update(self._bar, completed=self._done, total=total, status=self._status())
