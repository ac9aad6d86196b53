"""The timeline picture of a JobReport: a Gantt chart drawn with matplotlib.

matplotlib is an optional extra (``daguerreo-actors[plot]``), imported only
here and only when a timeline is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from daguerreo_actors._states import TaskState
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
FORMATS = (".png", ".svg")


def draw_timeline(report: JobReport, path: Path) -> Path:
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"timeline path must end in .png or .svg, got {path.name!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise ImportError(
            "JobReport.save_timeline needs matplotlib: pip install 'daguerreo-actors[plot]'"
        ) from exc

    tasks = [t for t in report.tasks.values() if t.attempts]
    tasks.sort(key=lambda t: min(a.started_at or 0.0 for a in t.attempts))
    origin = report.started_at
    if origin is None:
        starts = [a.started_at for t in tasks for a in t.attempts if a.started_at is not None]
        origin = min(starts) if starts else 0.0
    height = max(2.5, 0.32 * len(tasks) + 1.2)
    min_width = 0.004 * max(report.wall_time, 1e-3)
    fig, ax = plt.subplots(figsize=(10, min(height, 40)))
    for row, task in enumerate(tasks):
        for attempt in task.attempts:
            if attempt.ready_at is not None and attempt.started_at is not None:
                ax.barh(
                    row,
                    attempt.started_at - attempt.ready_at,
                    left=attempt.ready_at - origin,
                    color=QUEUE_COLOUR,
                    height=0.6,
                )
            if attempt.started_at is None:
                continue
            end = attempt.ended_at if attempt.ended_at is not None else report.ended_at
            # A floor of 0.4% of the job's span keeps instant attempts visible.
            width = max((end or attempt.started_at) - attempt.started_at, min_width)
            ax.barh(
                row,
                width,
                left=attempt.started_at - origin,
                color=COLOURS.get(attempt.outcome, COLOURS[None]),
                edgecolor="white",
                height=0.6,
            )
    ax.set_yticks(range(len(tasks)))
    # parse_math=False: a "$" in a name is text, not mathtext (which raises
    # on what it cannot parse).
    ax.set_yticklabels([escape_controls(t.name) for t in tasks], fontsize=8, parse_math=False)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the job started")
    ax.set_title(
        f"job {escape_controls(report.job_id or '?')}: "
        f"{report.state.value}, {report.wall_time:.3f} s",
        parse_math=False,
    )
    legend = [Patch(color=QUEUE_COLOUR, label="queued (ready)")] + [
        Patch(color=colour, label=state.value)
        for state, colour in COLOURS.items()
        if state is not None
    ]
    # Outside the axes, so it never hides a bar.
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
