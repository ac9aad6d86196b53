"""JobReport: what a job did, from its events or from its structured log.

A report is fed transition records, one per event, whether they come from
a listener call (``TaskEvent``/``JobEvent``) or from a JSON log line
written through :func:`configure_logging` at debug level. From them it
keeps, per task, every attempt's READY, RUNNING and end times and outcome,
and per job its start, end and final state. Everything else (queue waits,
run times, totals, the critical path) is computed on demand.

The critical path is the chain of dependencies that determined the wall
time: start from the task that ended last and repeatedly step to the
dependency that completed last (the one whose completion let the task
become READY), back to a task without dependencies. Dependencies come from
the log (the UNSCHEDULED -> READY entries carry them) or, for a report
built from events, from the ``tasks`` given to the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._events import Event, JobInfo
from daguerreo_actors._logfile import (
    ATTEMPT,
    ATTEMPT_OVERRUNNING,
    EVENT,
    JOB_NAME,
    SECONDS_PAST,
    TASK,
    EntryFilter,
    is_straggler_entry,
    iter_entries,
)
from daguerreo_actors._report_records import Record, from_entry, from_event
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._task import Task
from daguerreo_actors._text import escape_controls

if TYPE_CHECKING:
    from pathlib import Path

_OUTCOMES = frozenset(
    {
        TaskState.COMPLETED,
        TaskState.EXCEPTION,
        TaskState.TIMED_OUT,
        TaskState.INVALID_RESULT,
        TaskState.CANCELLED,
    }
)


@dataclasses.dataclass(slots=True)
class AttemptReport:
    """One attempt of a task: when it was queued, ran and ended, and how."""

    attempt: int
    ready_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: TaskState | None = None
    error: str | None = None
    #: Timed out: ``"deadline"`` or ``"heartbeat"``.
    reason: str | None = None
    #: Its last ``is_active(progress)`` value (a short repr).
    progress: str | None = None
    #: Abandoned while running: seconds past its deadline it was last seen
    #: running (``overrunning``) or its code returned (from the log).
    overran_by: float | None = None
    #: Still running ``kill_after`` past its deadline, not seen returning.
    overrunning: bool = False

    @property
    def queue_wait(self) -> float:
        """Seconds from READY to RUNNING (0 if unknown)."""
        if self.ready_at is None or self.started_at is None:
            return 0.0
        return max(0.0, self.started_at - self.ready_at)

    @property
    def run_time(self) -> float:
        """Seconds from RUNNING to its outcome (0 if unknown or unfinished)."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)


@dataclasses.dataclass(slots=True)
class TaskReport:
    """One task: its attempts and final state."""

    name: str
    state: TaskState = TaskState.UNSCHEDULED
    dependencies: tuple[str, ...] = ()
    attempts: list[AttemptReport] = dataclasses.field(default_factory=list)
    completed_at: float | None = None
    #: When the task reached its current state (for a skipped task: when it was skipped).
    state_at: float | None = None
    _ready_at: float | None = None

    @property
    def queue_wait(self) -> float:
        return sum(a.queue_wait for a in self.attempts)

    @property
    def run_time(self) -> float:
        return sum(a.run_time for a in self.attempts)

    @property
    def ended_at(self) -> float | None:
        ends = [a.ended_at for a in self.attempts if a.ended_at is not None]
        return max(ends) if ends else None


class JobReport:
    """Per-task attempts, queue waits, run times and final states of one job.

    Use it as a listener (``run(tasks, listeners=[report])``, then
    ``job.wait_for_listeners()``: it learns the job's dependencies from
    ``run()``), or build it with :meth:`from_events` (pass ``tasks`` so it
    knows the dependencies, for :attr:`critical_path`) or :meth:`from_log`.
    """

    def __init__(self, tasks: Iterable[Task | Mapping[str, Any]] | None = None) -> None:
        self.job_id: str | None = None
        #: ``run(name=...)``, when the report was a listener of that run.
        self.name: str | None = None
        self.state: JobState = JobState.IDLE
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.tasks: dict[str, TaskReport] = {}
        if tasks is not None:
            for task in tasks:
                if isinstance(task, Task):
                    name, deps = task.name, tuple(sorted(task.dependencies))
                else:
                    name, deps = str(task["name"]), tuple(sorted(task.get("dependencies", ())))
                self.tasks[name] = TaskReport(name, dependencies=deps)

    # -- building -------------------------------------------------------------

    def job_starting(self, info: JobInfo) -> None:
        """Learn the job's name and dependencies (``run()`` calls it; no ``tasks`` needed)."""
        self.job_id = info.job_id
        self.name = info.name
        for name, dependencies in info.dependencies.items():
            task = self.tasks.get(name)
            if task is None:
                task = self.tasks[name] = TaskReport(name)
            task.dependencies = dependencies

    def __call__(self, event: Event) -> None:
        """Take one event (the listener interface)."""
        if self.job_id is None:
            self.job_id = event.job_id
        self._add(from_event(event))

    @classmethod
    def from_events(
        cls, events: Iterable[Event], tasks: Iterable[Task | Mapping[str, Any]] | None = None
    ) -> JobReport:
        report = cls(tasks)
        for event in events:
            report(event)
        return report

    @classmethod
    def from_log(cls, source: str | Path | Iterable[str], job_id: str | None = None) -> JobReport:
        """The report of ``job_id`` (by default the last job) in a JSON-lines log.

        ``job_id`` may be a prefix of the id. Raises LookupError if the log
        holds no such job.
        """
        wanted = EntryFilter(job=job_id)
        reports = [r for r in cls.all_from_log(source) if wanted.matches_job(r.job_id)]
        if not reports:
            which = "no job" if job_id is None else f"no job {job_id!r}"
            raise LookupError(f"{which} in the log")
        return reports[-1]

    @classmethod
    def from_journal(cls, path: str | Path, job_id: str | None = None) -> JobReport:
        """The report of ``job_id`` (by default the last job) in a journal (``run(journal=)``)."""
        from daguerreo_actors._journal_read import journal_lines

        return cls.from_log(journal_lines(path), job_id)

    @classmethod
    def all_from_log(cls, source: str | Path | Iterable[str]) -> list[JobReport]:
        """One report per job found in a JSON-lines log, in order of appearance."""
        reports: dict[str, JobReport] = {}
        for entry in iter_entries(source, stragglers=True):
            job_id = str(entry["job_id"])
            report = reports.get(job_id)
            if report is None:
                report = reports[job_id] = cls()
                report.job_id = job_id
            if is_straggler_entry(entry):
                report._straggler(entry)
            else:
                report._add(from_entry(entry))
                name = entry.get(JOB_NAME)
                if isinstance(name, str):
                    report.name = name
        return list(reports.values())

    def _straggler(self, entry: dict[str, Any]) -> None:
        task = self.tasks.get(entry[TASK])
        number = entry[ATTEMPT]
        found = [a for a in task.attempts if a.attempt == number] if task is not None else []
        if not found:
            return
        attempt = found[-1]
        attempt.overran_by = float(entry[SECONDS_PAST])
        attempt.overrunning = entry[EVENT] == ATTEMPT_OVERRUNNING

    @property
    def stragglers(self) -> list[tuple[str, AttemptReport]]:
        """Attempts whose code ran on past their deadline (from a log), by task."""
        return [
            (t.name, a) for t in self.tasks.values() for a in t.attempts if a.overran_by is not None
        ]

    def _add(self, record: Record) -> None:
        if record.task is None:
            if record.new == JobState.RUNNING.value:
                self.started_at = record.ts
            new_state = JobState(record.new)
            if new_state.is_terminal:
                self.ended_at = record.ts
            self.state = new_state
            return
        task = self.tasks.get(record.task)
        if task is None:
            task = self.tasks[record.task] = TaskReport(record.task)
        if record.dependencies is not None:
            task.dependencies = record.dependencies
        new = TaskState(record.new)
        task.state = new
        task.state_at = record.ts
        if new is TaskState.READY:
            task._ready_at = record.ts
        elif new is TaskState.RUNNING:
            task.attempts.append(
                AttemptReport(record.attempt, ready_at=task._ready_at, started_at=record.ts)
            )
        elif new in _OUTCOMES and task.attempts:
            last = task.attempts[-1]
            last.ended_at = record.ts
            last.outcome = new
            last.error = record.error
            last.reason = record.reason
            last.progress = record.progress
            if new is TaskState.COMPLETED:
                task.completed_at = record.ts
        elif new is TaskState.COMPLETED:
            task.completed_at = record.ts  # restored from a journal: no attempt
        elif new is TaskState.FAILED and record.error and task.attempts:
            task.attempts[-1].error = task.attempts[-1].error or record.error

    # -- results ----------------------------------------------------------------

    @property
    def wall_time(self) -> float:
        """Seconds from the job's start to its end (0 if unknown)."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)

    @property
    def totals(self) -> dict[str, Any]:
        by_state: dict[str, int] = {}
        for task in self.tasks.values():
            by_state[task.state.value] = by_state.get(task.state.value, 0) + 1
        attempts = sum(len(t.attempts) for t in self.tasks.values())
        return {
            "tasks": len(self.tasks),
            "attempts": attempts,
            "retries": sum(max(0, len(t.attempts) - 1) for t in self.tasks.values()),
            "by_state": dict(sorted(by_state.items())),
            "run_time": sum(t.run_time for t in self.tasks.values()),
            "queue_wait": sum(t.queue_wait for t in self.tasks.values()),
            "wall_time": self.wall_time,
        }

    @property
    def critical_path(self) -> list[str]:
        """Task names from a root to the task that ended last; see the module doc."""
        ended = [t for t in self.tasks.values() if t.ended_at is not None]
        if not ended:
            return []
        current = max(ended, key=lambda t: t.ended_at or 0.0)
        path = [current.name]
        seen = {current.name}
        while True:
            deps = [self.tasks[d] for d in current.dependencies if d in self.tasks]
            finished = [d for d in deps if d.completed_at is not None and d.name not in seen]
            if not finished:
                break
            current = max(finished, key=lambda t: t.completed_at or 0.0)
            path.append(current.name)
            seen.add(current.name)
        path.reverse()
        return path

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report, JSON-able."""
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "wall_time": self.wall_time,
            "totals": self.totals,
            "critical_path": self.critical_path,
            "tasks": [
                {
                    "name": t.name,
                    "state": t.state.value,
                    "dependencies": list(t.dependencies),
                    "attempts": len(t.attempts),
                    "queue_wait": t.queue_wait,
                    "run_time": t.run_time,
                    "attempt_details": [
                        {
                            "attempt": a.attempt,
                            "ready_at": a.ready_at,
                            "started_at": a.started_at,
                            "ended_at": a.ended_at,
                            "outcome": None if a.outcome is None else a.outcome.value,
                            "queue_wait": a.queue_wait,
                            "run_time": a.run_time,
                            "error": a.error,
                            "reason": a.reason,
                            "progress": a.progress,
                            "overran_by": a.overran_by,
                            "overrunning": a.overrunning,
                        }
                        for a in t.attempts
                    ],
                }
                for t in self.tasks.values()
            ],
        }

    def to_markdown(self) -> str:
        """A markdown summary: the job, a table of tasks, the critical path."""
        totals = self.totals
        lines = [
            f"## Job {_md(self.job_id or '?')}: {self.state.value}",
            "",
            f"Wall time {self.wall_time:.3f} s; {totals['tasks']} tasks, "
            f"{totals['attempts']} attempts ({totals['retries']} retries); "
            + ", ".join(f"{n} {s}" for s, n in totals["by_state"].items())
            + ".",
            "",
            "| task | state | attempts | queue wait (s) | run time (s) |",
            "|---|---|---|---|---|",
        ]
        for t in self.tasks.values():
            lines.append(
                f"| {_md(t.name)} | {t.state.value} | {len(t.attempts)} "
                f"| {t.queue_wait:.3f} | {t.run_time:.3f} |"
            )
        for name, a in self.stragglers:
            lines.append("")
            lines.append(f"Straggler: {_md(name)} attempt {a.attempt} {_overrun_text(a)}.")
        path = self.critical_path
        lines += ["", "Critical path: " + (" -> ".join(_md(p) for p in path) or "(none)"), ""]
        return "\n".join(lines)

    def save_timeline(self, path: str | Path) -> Path:
        """Draw every attempt as a bar (a Gantt chart), coloured by outcome.

        The format follows the suffix: ``.png`` or ``.svg``. Needs
        matplotlib, the ``daguerreo-actors[plot]`` extra.
        """
        from pathlib import Path

        from daguerreo_actors._timeline import draw_timeline

        return draw_timeline(self, Path(path))

    def save_html(self, path: str | Path, *, layout: str = "auto") -> Path:
        """Write the report page: one self-contained HTML file (see the README).

        ``layout`` places the DAG: ``"auto"`` (graphviz's dot where it is
        installed and the DAG has at most 500 tasks, else ``"layered"``, a
        pure-Python layout), ``"dot"`` or ``"layered"``.
        """
        from pathlib import Path

        from daguerreo_actors._report_html import save_html

        return save_html(self, Path(path), layout_method=layout)


def _overrun_text(attempt: AttemptReport) -> str:
    if attempt.overrunning:
        return f"still running {attempt.overran_by:.1f} s past its deadline"
    return f"returned {attempt.overran_by:.1f} s past its deadline"


def _md(text: str) -> str:
    return escape_controls(text).replace("|", "\\|")
