"""The report page: one self-contained HTML file of a :class:`JobReport`.

What is drawn where: this module writes the header, the DAG and the
timeline as inline SVG (so they show with scripts off), and the tasks as a
JSON blob; the page's script (``_report_assets/report.js``) builds the
sortable task table from that blob, showing only the rows in view (so
10,000 tasks cost about 40 rows of DOM), and wires the clicks: a task
clicked in any of the three is selected in all three and its attempts and
error text are shown. Nothing is fetched: CSS and script are inline.

Every string from a report (task names, errors: they come from logs and
user code) is escaped: :func:`html.escape` in markup, ``\\u003c``-escaped
JSON in the blob, and the script only ever sets ``textContent``.

A mapped task's children (``sq[3]``) are rows of the timeline and the
table; in the DAG they are drawn as their parent, which says how many
there were.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daguerreo_actors._layout import Layout, layout
from daguerreo_actors._map_child import CHILD_NAME
from daguerreo_actors._states import TaskState
from daguerreo_actors._text import escape_controls
from daguerreo_actors._timeline import COLOURS, NEVER_RAN_COLOUR, QUEUE_COLOUR

if TYPE_CHECKING:
    from daguerreo_actors._report import JobReport, TaskReport

#: Up to this many DAG nodes, each is drawn with its name in it.
LABEL_LIMIT = 300
#: The timeline's width in pixels (its time axis).
TIMELINE_WIDTH = 1100.0
#: The dashed line between an attempt's end and its retry's READY.
GAP_COLOUR = "#999999"
#: A task's final state (the DAG's nodes, the header); attempts use COLOURS.
_STATE_COLOURS = {
    TaskState.COMPLETED: COLOURS[TaskState.COMPLETED],
    TaskState.FAILED: COLOURS[TaskState.EXCEPTION],
    TaskState.INVALID_RESULT: COLOURS[TaskState.INVALID_RESULT],
    TaskState.CANCELLED: COLOURS[TaskState.CANCELLED],
    TaskState.UPSTREAM_FAILED: "#f4a6ad",
    TaskState.SKIPPED: NEVER_RAN_COLOUR,
    TaskState.TIMED_OUT: COLOURS[TaskState.TIMED_OUT],
    TaskState.EXCEPTION: COLOURS[TaskState.EXCEPTION],
}


def _text(value: str) -> str:
    return html.escape(escape_controls(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def save_html(report: JobReport, path: Path, *, layout_method: str = "auto") -> Path:
    """Write the page of ``report`` to ``path`` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, layout_method=layout_method), encoding="utf-8")
    return path


def render_html(report: JobReport, *, layout_method: str = "auto") -> str:
    tasks = list(report.tasks.values())
    index = {task.name: i for i, task in enumerate(tasks)}
    parent = [_parent(task.name, index) for task in tasks]
    nodes = [i for i in range(len(tasks)) if parent[i] < 0]
    origin = _origin(report, tasks)
    path = report.critical_path
    critical = set(path)
    page = resources.files("daguerreo_actors") / "_report_assets"
    data = {
        "origin": origin,
        "tasks": [
            _task_data(task, parent[i], origin, task.name in critical)
            for i, task in enumerate(tasks)
        ],
    }
    blob = (
        json.dumps(data, separators=(",", ":"), allow_nan=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    job = report.job_id or "?"
    title = f"Job {report.name} ({job[:8]})" if report.name else f"Job {job}"
    title += f": {report.state.value}"
    totals = report.totals
    counts = ", ".join(f"{n} {s}" for s, n in totals["by_state"].items())
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{_text(title)}</title><style>",
            _colour_variables(),
            (page / "report.css").read_text(encoding="utf-8"),
            "</style></head><body>",
            f'<header><h1 class="s-{report.state.value}">{_text(title)}</h1><p>',
            f"Wall time {report.wall_time:.3f} s; {totals['tasks']} tasks, ",
            f"{totals['attempts']} attempts ({totals['retries']} retries): {_text(counts)}.",
            ' Critical path: <span id="critical">',
            _text(" \u2192 ".join(path) or "(none)"),
            "</span></p></header>",
            '<section><h2>DAG</h2><div class="scroll" id="dag-box">',
            _dag_svg(tasks, nodes, index, parent, path, layout_method),
            "</div></section><section><h2>Timeline</h2>",
            _legend(),
            '<div class="scroll" id="timeline-box">',
            _timeline_svg(tasks, origin, report.wall_time, critical),
            '</div></section><section id="detail" hidden></section>',
            '<section><h2>Tasks</h2><div id="table-box" class="scroll">',
            '<table id="tasks"><thead><tr>',
            "".join(
                f'<th data-key="{key}">{label}</th>'
                for key, label in (
                    ("name", "task"),
                    ("state", "state"),
                    ("attempts", "attempts"),
                    ("wait", "queue wait (s)"),
                    ("run", "run time (s)"),
                    ("error", "error"),
                )
            ),
            "</tr></thead><tbody></tbody></table></div></section>",
            f'<script type="application/json" id="data">{blob}</script><script>',
            (page / "report.js").read_text(encoding="utf-8"),
            "</script></body></html>",
        ]
    )


def _colour_variables() -> str:
    """The colours the stylesheet uses, from the one table of each."""
    colours = {
        "completed": _STATE_COLOURS[TaskState.COMPLETED],
        "failed": _STATE_COLOURS[TaskState.FAILED],
        "cancelled": _STATE_COLOURS[TaskState.CANCELLED],
        "gap": GAP_COLOUR,
    }
    return ":root{" + "".join(f"--{name}:{value};" for name, value in colours.items()) + "}"


def _parent(name: str, index: dict[str, int]) -> int:
    """The index of the mapped task ``name`` is a child of, or -1."""
    match = CHILD_NAME.fullmatch(name)
    if match is None:
        return -1
    return index.get(match.group(1), -1)


def _origin(report: JobReport, tasks: list[TaskReport]) -> float:
    if report.started_at is not None:
        return report.started_at
    times = [a.ready_at or a.started_at for t in tasks for a in t.attempts]
    known = [t for t in times if t is not None]
    return min(known) if known else 0.0


def _rel(value: float | None, origin: float) -> float | None:
    return None if value is None else round(value - origin, 6)


def _task_data(task: TaskReport, parent: int, origin: float, critical: bool) -> dict[str, Any]:
    # The error of a task that did not complete: a retried one shows its attempts.
    last_error = None
    if task.state is not TaskState.COMPLETED:
        last_error = next((a.error for a in reversed(task.attempts) if a.error), None)
    return {
        "name": escape_controls(task.name),
        "state": task.state.value,
        "parent": parent,
        "critical": critical,
        "deps": [escape_controls(d) for d in task.dependencies],
        "wait": round(task.queue_wait, 6),
        "run": round(task.run_time, 6),
        "error": None if last_error is None else escape_controls(last_error),
        "attempts": [
            {
                "n": a.attempt,
                "ready": _rel(a.ready_at, origin),
                "start": _rel(a.started_at, origin),
                "end": _rel(a.ended_at, origin),
                "outcome": None if a.outcome is None else a.outcome.value,
                "error": None if a.error is None else escape_controls(a.error),
                "reason": a.reason,
            }
            for a in task.attempts
        ],
    }


def _dag_svg(
    tasks: list[TaskReport],
    nodes: list[int],
    index: dict[str, int],
    parent: list[int],
    path: list[str],
    method: str,
) -> str:
    critical = set(path)
    critical_edges = set(itertools.pairwise(path))
    position = {task: at for at, task in enumerate(nodes)}
    deps = [
        [position[index[d]] for d in tasks[task].dependencies if index.get(d) in position]
        for task in nodes
    ]
    labels = len(nodes) <= LABEL_LIMIT
    placed: Layout = layout(deps, labels=labels, method=method)
    children = [0] * len(tasks)
    for owner in parent:
        if owner >= 0:
            children[owner] += 1
    half_w, half_h = placed.node_width / 2, placed.node_height / 2
    edges: list[str] = []
    hot: list[str] = []
    for at, task in enumerate(nodes):
        for dep in deps[at]:
            segment = (
                f"M{_num(placed.x[dep] + half_w)} {_num(placed.y[dep])}"
                f"L{_num(placed.x[at] - half_w)} {_num(placed.y[at])}"
            )
            on_path = (tasks[nodes[dep]].name, tasks[task].name) in critical_edges
            (hot if on_path else edges).append(segment)
    out = [
        f'<svg id="dag" xmlns="http://www.w3.org/2000/svg" data-layout="{placed.method}" '
        f'width="{_num(placed.width)}" height="{_num(placed.height)}">',
        f'<path class="edges" d="{"".join(edges)}"/>',
        f'<path class="edges crit" d="{"".join(hot)}"/>',
    ]
    for at, task in enumerate(nodes):
        report = tasks[task]
        name = _text(report.name)
        tip = name if not children[task] else f"{name} ({children[task]} mapped children)"
        classes = f"node s-{report.state.value}" + (" crit" if report.name in critical else "")
        out.append(
            f'<g id="n{task}" class="{classes}" data-i="{task}"><title>{tip}</title>'
            f'<rect x="{_num(placed.x[at] - half_w)}" y="{_num(placed.y[at] - half_h)}" '
            f'width="{_num(placed.node_width)}" height="{_num(placed.node_height)}" '
            f'rx="3" fill="{_STATE_COLOURS.get(report.state, QUEUE_COLOUR)}"/>'
        )
        if labels:
            shown = report.name if len(report.name) <= 20 else report.name[:19] + "\u2026"
            suffix = f" \u00d7{children[task]}" if children[task] else ""
            out.append(
                f'<text x="{_num(placed.x[at])}" y="{_num(placed.y[at] + 4)}">'
                f"{_text(shown)}{suffix}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _legend() -> str:
    items = [("queued (ready)", QUEUE_COLOUR)]
    items += [(s.value, c) for s, c in COLOURS.items() if s is not None]
    items.append(("retry gap", GAP_COLOUR))
    return (
        '<p class="legend">'
        + "".join(
            f'<span><i style="background:{colour}"></i>{label}</span>' for label, colour in items
        )
        + "</p>"
    )


def _timeline_svg(tasks: list[TaskReport], origin: float, wall: float, critical: set[str]) -> str:
    ran = sorted(
        (i for i, t in enumerate(tasks) if t.attempts),
        key=lambda i: (tasks[i].attempts[0].started_at or 0.0, i),
    )
    rows = ran + [i for i, t in enumerate(tasks) if not t.attempts]
    ends = [a.ended_at for t in tasks for a in t.attempts if a.ended_at is not None]
    span = max(wall, (max(ends) - origin) if ends else 0.0, 1e-6)
    scale = TIMELINE_WIDTH / span
    row_h = 16.0 if len(rows) <= 200 else 3.0
    bar_h = row_h - (4.0 if row_h > 8 else 1.0)
    label_w = 160.0 if row_h > 8 else 0.0
    queued: list[str] = []
    gaps: list[str] = []
    bars: list[str] = []
    for row, task in enumerate(rows):
        top = row * row_h + 20
        previous_end: float | None = None
        for a in tasks[task].attempts:
            start = a.started_at
            if start is None:
                continue
            x0 = label_w + (start - origin) * scale
            if a.ready_at is not None and a.ready_at < start:
                qx = label_w + (a.ready_at - origin) * scale
                queued.append(f"M{_num(qx)} {_num(top)}h{_num(x0 - qx)}v{_num(bar_h)}H{_num(qx)}z")
            if previous_end is not None:
                gx = label_w + (previous_end - origin) * scale
                gy = top + bar_h / 2
                gaps.append(f"M{_num(gx)} {_num(gy)}H{_num(x0)}")
            end = a.ended_at if a.ended_at is not None else origin + span
            width = max(1.0, (end - start) * scale)
            outcome = "running" if a.outcome is None else a.outcome.value
            crit = " crit" if tasks[task].name in critical else ""
            bars.append(
                f'<rect class="bar o-{outcome}{crit}" data-i="{task}" x="{_num(x0)}" '
                f'y="{_num(top)}" width="{_num(width)}" height="{_num(bar_h)}" '
                f'fill="{COLOURS.get(a.outcome, COLOURS[None])}"/>'
            )
            previous_end = end
    labels = []
    if label_w:
        for row, task in enumerate(rows):
            name = tasks[task].name
            shown = name if len(name) <= 24 else name[:23] + "\u2026"
            labels.append(
                f'<text class="label" data-i="{task}" x="{_num(label_w - 6)}" '
                f'y="{_num(row * row_h + 20 + bar_h - 2)}">{_text(shown)}</text>'
            )
    ticks = [
        f'<text class="tick" x="{_num(label_w + at * scale)}" y="12">{at:g} s</text>'
        for at in _ticks(span)
    ]
    height = len(rows) * row_h + 24
    return "".join(
        [
            f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" '
            f'width="{_num(label_w + TIMELINE_WIDTH + 40)}" height="{_num(height)}">',
            *ticks,
            f'<path class="queued" fill="{QUEUE_COLOUR}" d="{"".join(queued)}"/>',
            f'<path class="gaps" d="{"".join(gaps)}"/>',
            *labels,
            *bars,
            "</svg>",
        ]
    )


def _ticks(span: float) -> list[float]:
    """Round times (steps of 1, 2 or 5 x 10^k) from 0 to ``span``, at most about 8."""
    step = 10.0 ** math.floor(math.log10(span / 8))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 8:
            step *= factor
            break
    count = int(span / step + 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]
