"""The timeline picture of a JobReport: a Gantt chart drawn with matplotlib.

:func:`layout` decides what is drawn (plain data, no matplotlib): one row
per task, attempts first in order of their start, then the tasks that never
ran (skipped, or not yet started when the report was taken), each with a
label saying so. Every attempt is at least :data:`MIN_WIDTH` of the span
wide, so a 4 ms failure in a 2 s job is a visible bar, not a hairline. The
title names the failed optional (``continue_on_failure``) tasks of a job that
completed anyway, and the task that failed a failed job.

matplotlib is an optional extra (``daguerreo-actors[plot]``), imported only
in :func:`build_figure`, when a timeline is drawn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import escape_controls

if TYPE_CHECKING:
    from daguerreo_actors._report import JobReport

COLOURS = {
    TaskState.COMPLETED: "#2e9d48",
    TaskState.EXCEPTION: "#d1495b",
    TaskState.TIMED_OUT: "#f08a24",
    TaskState.INVALID_RESULT: "#8e44ad",
    TaskState.CANCELLED: "#8d99ae",
    None: "#c9d1d9",  # never ended (the report was taken mid-job)
}
QUEUE_COLOUR = "#e6ebf1"
NEVER_RAN_COLOUR = "#6c757d"
FORMATS = (".png", ".svg")
#: The narrowest an attempt is drawn, as a share of the job's span.
MIN_WIDTH = 0.01
#: A task failing is a failure whatever the name of its state.
_FAILURES = frozenset({TaskState.FAILED, TaskState.INVALID_RESULT})
_NAMED = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    left: float
    width: float
    colour: str
    queued: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One task: its bars, or (a task that never ran) a label and where to put it."""

    name: str
    bars: tuple[Bar, ...] = ()
    label: str | None = None
    at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    title: str
    span: float
    rows: tuple[Row, ...]


def layout(report: JobReport) -> Layout:
    """What the timeline shows, in seconds since the job started."""
    ran = [t for t in report.tasks.values() if t.attempts]
    ran.sort(key=lambda t: min(a.started_at or 0.0 for a in t.attempts))
    never = [t for t in report.tasks.values() if not t.attempts]
    origin = report.started_at
    if origin is None:
        starts = [a.started_at for t in ran for a in t.attempts if a.started_at is not None]
        origin = min(starts) if starts else 0.0
    ends = [report.ended_at] + [a.ended_at or a.started_at for t in ran for a in t.attempts]
    span = max([e - origin for e in ends if e is not None] + [report.wall_time, 1e-3])
    min_width = MIN_WIDTH * span
    rows: list[Row] = []
    for task in ran:
        bars: list[Bar] = []
        for attempt in task.attempts:
            if attempt.ready_at is not None and attempt.started_at is not None:
                wait = attempt.started_at - attempt.ready_at
                bars.append(Bar(attempt.ready_at - origin, wait, QUEUE_COLOUR, queued=True))
            if attempt.started_at is None:
                continue
            end = attempt.ended_at if attempt.ended_at is not None else report.ended_at
            width = max((end or attempt.started_at) - attempt.started_at, min_width)
            colour = COLOURS.get(attempt.outcome, COLOURS[None])
            bars.append(Bar(attempt.started_at - origin, width, colour))
        rows.append(Row(escape_controls(task.name), tuple(bars)))
    for task in never:
        at = (task.state_at - origin) if task.state_at is not None else 0.0
        label = task.state.value if task.state.is_terminal else "never ran"
        rows.append(Row(escape_controls(task.name), label=label, at=max(0.0, at)))
    return Layout(_title(report), span, tuple(rows))


def _title(report: JobReport) -> str:
    state = report.state.value
    failed = [escape_controls(t.name) for t in report.tasks.values() if t.state in _FAILURES]
    if failed and report.state is JobState.COMPLETED:
        n = len(failed)
        names = ", ".join(failed[:_NAMED]) + (f" +{n - _NAMED}" if n > _NAMED else "")
        state += f" ({n} optional task{'' if n == 1 else 's'} failed: {names})"
    elif failed and report.state is JobState.FAILED:
        state += f" (failed task: {', '.join(failed[:_NAMED])})"
    return f"job {escape_controls(report.job_id or '?')}: {state}, {report.wall_time:.3f} s"


def build_figure(report: JobReport) -> Any:
    """The matplotlib Figure of the timeline (the caller closes it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise ImportError(
            "JobReport.save_timeline needs matplotlib: pip install 'daguerreo-actors[plot]'"
        ) from exc

    plan = layout(report)
    height = max(2.5, 0.32 * len(plan.rows) + 1.2)
    fig, ax = plt.subplots(figsize=(10, min(height, 40)))
    for row_number, row in enumerate(plan.rows):
        for bar in row.bars:
            ax.barh(
                row_number,
                bar.width,
                left=bar.left,
                color=bar.colour,
                edgecolor=None if bar.queued else "white",
                linewidth=0 if bar.queued else 0.5,
                height=0.6,
            )
        if row.label is not None:
            ax.plot([row.at], [row_number], marker="x", color=NEVER_RAN_COLOUR, markersize=6)
            ax.annotate(
                row.label,
                (row.at, row_number),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color=NEVER_RAN_COLOUR,
                annotation_clip=False,
            )
    ax.set_yticks(range(len(plan.rows)))
    # parse_math=False: a "$" in a name is text, not mathtext (which raises
    # on what it cannot parse).
    ax.set_yticklabels([row.name for row in plan.rows], fontsize=8, parse_math=False)
    ax.set_ylim(len(plan.rows) - 0.5, -0.5)
    ax.set_xlim(0, plan.span * 1.08)  # room for a label at the very end
    ax.set_xlabel("seconds since the job started")
    ax.set_title(plan.title, parse_math=False)
    legend: list[Any] = [Patch(color=QUEUE_COLOUR, label="queued (ready)")]
    legend += [Patch(color=c, label=s.value) for s, c in COLOURS.items() if s is not None]
    legend.append(
        Line2D([], [], marker="x", color=NEVER_RAN_COLOUR, linestyle="", label="skipped, never ran")
    )
    # Outside the axes, so it never hides a bar.
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def draw_timeline(report: JobReport, path: Path) -> Path:
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"timeline path must end in .png or .svg, got {path.name!r}")
    fig = build_figure(report)
    import matplotlib.pyplot as plt

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
