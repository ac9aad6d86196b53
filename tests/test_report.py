"""JobReport: attempts, queue waits, run times, critical path, and its three outputs.

The numbers are checked against jobs with known sleeps; the same job is
also read back from a JSON log written through configure_logging.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from helpers import WAIT, Ctx, IsActive
from hypothesis import given, settings
from hypothesis import strategies as st

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobReport, JobState, Task, TaskEvent, TaskState
from daguerreo_actors._logfile import parse_entry


def sleeper(seconds: float, key: str = "done") -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        time.sleep(seconds)
        return {key: True}

    return fn


def flaky(failures: int) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    calls: list[int] = []

    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError(f"attempt {len(calls)} fails")
        return {"flaky": len(calls)}

    return fn


def reported(tasks: list[Task], **options: Any) -> tuple[d.JobResult, JobReport]:
    report = JobReport(tasks)
    job = d.run(tasks, listeners=[report], **options)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result, report


DIAMOND = [
    Task("root", sleeper(0.02)),
    Task("slow", sleeper(0.3), dependencies=["root"]),
    Task("fast", sleeper(0.02), dependencies=["root"]),
    Task("sink", sleeper(0.02), dependencies=["slow", "fast"]),
]


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    """A JSON-lines log the engine writes to (configure_logging at debug)."""
    path = tmp_path / "log.jsonl"
    d.configure_logging(json_file=path, level="debug")
    yield path
    d.configure_logging(json_file=io.StringIO())  # closes the file


# -- numbers --------------------------------------------------------------------------


def test_a_task_sleeping_0_2_s_has_a_run_time_of_about_0_2_s() -> None:
    result, report = reported([Task("nap", sleeper(0.2))])
    assert result.ok
    nap = report.tasks["nap"]
    assert 0.15 <= nap.run_time <= 0.6
    assert len(nap.attempts) == 1
    assert nap.attempts[0].outcome is TaskState.COMPLETED
    assert nap.state is TaskState.COMPLETED
    assert 0.0 <= nap.queue_wait < 0.2
    assert report.job_id is not None
    assert len(report.job_id) == 32
    assert report.state is JobState.COMPLETED
    assert nap.run_time <= report.wall_time <= nap.run_time + 0.3


def test_with_max_concurrency_1_the_second_task_waits_for_the_first() -> None:
    tasks = [Task("first", sleeper(0.2, "a")), Task("second", sleeper(0.2, "b"))]
    result, report = reported(tasks, max_concurrency=1)
    assert result.ok
    first, second = report.tasks["first"], report.tasks["second"]
    assert first.queue_wait < 0.1
    assert abs(second.queue_wait - first.run_time) < 0.1
    assert 0.15 <= second.run_time <= 0.6
    assert 0.35 <= report.wall_time <= 1.2
    assert report.totals["queue_wait"] == pytest.approx(first.queue_wait + second.queue_wait)


def test_the_critical_path_of_a_diamond_goes_through_the_slower_branch() -> None:
    result, report = reported(DIAMOND)
    assert result.ok
    assert report.critical_path == ["root", "slow", "sink"]
    chain = sum(report.tasks[name].run_time for name in ("root", "slow", "sink"))
    assert chain <= report.wall_time + 0.01
    assert report.wall_time < chain + 0.3


def test_the_critical_path_follows_whichever_branch_was_slower() -> None:
    tasks = [
        Task("root", sleeper(0.01)),
        Task("slow", sleeper(0.02), dependencies=["root"]),
        Task("fast", sleeper(0.25), dependencies=["root"]),
        Task("sink", sleeper(0.01), dependencies=["slow", "fast"]),
    ]
    _, report = reported(tasks)
    assert report.critical_path == ["root", "fast", "sink"]


def test_retries_are_counted_with_their_errors_and_totals() -> None:
    tasks = [Task("flaky", flaky(2)), Task("after", sleeper(0.01), dependencies=["flaky"])]
    result, report = reported(tasks, max_retries=3)
    assert result.ok
    task = report.tasks["flaky"]
    assert [a.attempt for a in task.attempts] == [1, 2, 3]
    assert [a.outcome for a in task.attempts] == [
        TaskState.EXCEPTION,
        TaskState.EXCEPTION,
        TaskState.COMPLETED,
    ]
    assert task.attempts[0].error == "RuntimeError: attempt 1 fails"
    assert task.attempts[2].error is None
    totals = report.totals
    assert totals["tasks"] == 2
    assert totals["attempts"] == 4
    assert totals["retries"] == 2
    assert totals["by_state"] == {"completed": 2}
    assert report.critical_path == ["flaky", "after"]


def test_a_failed_job_reports_the_failure_and_the_tasks_it_kept_from_running() -> None:
    tasks = [Task("bad", flaky(99)), Task("never", sleeper(0), dependencies=["bad"])]
    result, report = reported(tasks, max_retries=1)
    assert result.state is JobState.FAILED
    assert report.state is JobState.FAILED
    assert report.tasks["bad"].state is TaskState.FAILED
    assert len(report.tasks["bad"].attempts) == 2
    assert report.tasks["never"].state is TaskState.UPSTREAM_FAILED
    assert report.tasks["never"].attempts == []
    assert report.totals["by_state"] == {"failed": 1, "upstream_failed": 1}
    assert report.critical_path == ["bad"]


def test_a_report_from_the_json_log_matches_the_one_from_events(json_log: Path) -> None:
    result, live = reported(DIAMOND)
    assert result.ok
    logged = JobReport.from_log(json_log)
    assert logged.job_id == live.job_id
    assert logged.state is JobState.COMPLETED
    assert logged.critical_path == ["root", "slow", "sink"]
    assert set(logged.tasks["sink"].dependencies) == {"fast", "slow"}
    for name, task in live.tasks.items():
        assert logged.tasks[name].run_time == pytest.approx(task.run_time, abs=0.002)
        assert logged.tasks[name].queue_wait == pytest.approx(task.queue_wait, abs=0.002)
    assert logged.wall_time == pytest.approx(live.wall_time, abs=0.002)


def test_from_log_picks_a_job_by_id_prefix_and_all_from_log_finds_every_job(
    json_log: Path,
) -> None:
    first = d.run([Task("a", sleeper(0))])
    second = d.run([Task("b", sleeper(0)), Task("c", sleeper(0))])
    assert first.get(timeout=WAIT).ok
    assert second.get(timeout=WAIT).ok
    assert second.wait_for_listeners(WAIT)  # the log entries are written
    reports = JobReport.all_from_log(json_log)
    assert {r.job_id for r in reports} == {first.id, second.id}
    assert set(JobReport.from_log(json_log, job_id=first.id[:10]).tasks) == {"a"}
    assert set(JobReport.from_log(json_log.read_text().splitlines(), second.id).tasks) == {
        "b",
        "c",
    }
    with pytest.raises(LookupError, match="no job 'zzz'"):
        JobReport.from_log(json_log, job_id="zzz")
    with pytest.raises(LookupError, match="no job in the log"):
        JobReport.from_log(["garbage", "{}"])


def test_from_events_with_tasks_knows_the_dependencies() -> None:
    events: list[d.Event] = []
    job = d.run(DIAMOND, listeners=[events.append])
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)
    assert JobReport.from_events(events, DIAMOND).critical_path == ["root", "slow", "sink"]
    # Without the tasks, nothing says what a task waited for.
    assert JobReport.from_events(events).critical_path == ["sink"]
    mappings = [{"name": t.name, "dependencies": list(t.dependencies)} for t in DIAMOND]
    assert JobReport.from_events(events, mappings).critical_path == ["root", "slow", "sink"]


def test_a_report_of_synthetic_events_computes_exact_numbers() -> None:
    job = "j"
    t0 = 1000.0
    events: list[d.Event] = [
        JobEvent(job, JobState.IDLE, JobState.RUNNING, t0),
        TaskEvent(job, "a", TaskState.UNSCHEDULED, TaskState.READY, 0, t0),
        TaskEvent(job, "a", TaskState.READY, TaskState.RUNNING, 1, t0 + 0.5),
        TaskEvent(job, "a", TaskState.RUNNING, TaskState.TIMED_OUT, 1, t0 + 1.5),
        TaskEvent(job, "a", TaskState.TIMED_OUT, TaskState.READY, 1, t0 + 1.5),
        TaskEvent(job, "a", TaskState.READY, TaskState.RUNNING, 2, t0 + 1.75),
        TaskEvent(job, "a", TaskState.RUNNING, TaskState.COMPLETED, 2, t0 + 2.0),
        JobEvent(job, JobState.RUNNING, JobState.COMPLETED, t0 + 2.0),
    ]
    report = JobReport.from_events(events)
    a = report.tasks["a"]
    assert a.queue_wait == pytest.approx(0.75)
    assert a.run_time == pytest.approx(1.25)
    assert [x.outcome for x in a.attempts] == [TaskState.TIMED_OUT, TaskState.COMPLETED]
    assert report.wall_time == pytest.approx(2.0)
    assert report.started_at == t0
    assert report.ended_at == t0 + 2.0


def test_an_empty_report_has_zeros_and_no_path() -> None:
    report = JobReport()
    assert report.wall_time == 0.0
    assert report.critical_path == []
    assert report.totals["tasks"] == 0
    json.dumps(report.to_dict())
    assert "(none)" in report.to_markdown()


# -- outputs --------------------------------------------------------------------------


def test_to_dict_is_json_and_holds_every_number() -> None:
    tasks = [Task("flaky", flaky(1)), Task("nap", sleeper(0.05), dependencies=["flaky"])]
    _, report = reported(tasks)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["state"] == "completed"
    assert data["job_id"] == report.job_id
    assert data["critical_path"] == ["flaky", "nap"]
    assert data["totals"]["retries"] == 1
    by_name = {t["name"]: t for t in data["tasks"]}
    assert by_name["nap"]["dependencies"] == ["flaky"]
    assert by_name["flaky"]["attempts"] == 2
    details = by_name["flaky"]["attempt_details"]
    assert [a["outcome"] for a in details] == ["exception", "completed"]
    assert details[0]["error"] == "RuntimeError: attempt 1 fails"
    assert by_name["nap"]["run_time"] == pytest.approx(report.tasks["nap"].run_time)


def test_to_markdown_has_a_row_per_task_and_the_critical_path() -> None:
    tasks = [Task("a|b", sleeper(0)), Task("c", sleeper(0), dependencies=["a|b"])]
    _, report = reported(tasks)
    markdown = report.to_markdown()
    assert markdown.startswith(f"## Job {report.job_id}: completed\n")
    assert "| task | state | attempts | queue wait (s) | run time (s) |" in markdown
    assert "| a\\|b | completed | 1 |" in markdown
    assert "| c | completed | 1 |" in markdown
    assert "Critical path: a\\|b -> c" in markdown
    assert "2 tasks, 2 attempts (0 retries); 2 completed." in markdown


names = st.one_of(
    st.text(min_size=1, max_size=20),
    st.lists(
        st.sampled_from(["\x1b[31m", "\u202e", "\r", "\x07", "\n", "|", "\\", "\ud800", "x"]),
        min_size=1,
        max_size=6,
    ).map("".join),
)


@settings(max_examples=examples(100))
@given(first=names, second=names, job_id=names)
def test_to_markdown_escapes_names_and_keeps_one_row_per_task(
    first: str, second: str, job_id: str
) -> None:
    ts = 1000.0
    events: list[d.Event] = [JobEvent(job_id, JobState.IDLE, JobState.RUNNING, ts)]
    for name in dict.fromkeys([first, second]):
        events += [
            TaskEvent(job_id, name, TaskState.UNSCHEDULED, TaskState.READY, 0, ts),
            TaskEvent(job_id, name, TaskState.READY, TaskState.RUNNING, 1, ts),
            TaskEvent(job_id, name, TaskState.RUNNING, TaskState.COMPLETED, 1, ts + 1),
        ]
    events.append(JobEvent(job_id, JobState.RUNNING, JobState.COMPLETED, ts + 1))
    markdown = JobReport.from_events(events).to_markdown()
    bad = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert [c for c in markdown if c != "\n" and unicodedata.category(c) in bad] == []
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len({first, second})
    for row in rows:
        unescaped_pipes = row.replace("\\\\", "").replace("\\|", "").count("|")
        assert unescaped_pipes == 6


# -- the timeline ---------------------------------------------------------------------


def test_save_timeline_writes_a_png(tmp_path: Path) -> None:
    tasks = [*DIAMOND[:2], Task("retry", flaky(1))]
    _, report = reported(tasks)
    pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")
    path = report.save_timeline(tmp_path / "out" / "timeline.png")
    assert path == tmp_path / "out" / "timeline.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_save_timeline_writes_an_svg_even_for_names_matplotlib_would_parse(
    tmp_path: Path,
) -> None:
    tasks = [Task("$\\undefined{$", sleeper(0)), Task("a$b$c\x1b[31m", sleeper(0))]
    _, report = reported(tasks)
    pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")
    path = report.save_timeline(str(tmp_path / "timeline.svg"))
    text = path.read_text()
    assert "<svg" in text
    assert "\x1b" not in text


def test_save_timeline_of_a_report_built_from_a_log_mid_job(tmp_path: Path) -> None:
    # A job cut short: an attempt that never ended, no job start known.
    report = JobReport.from_log(
        [
            json.dumps(
                {
                    "event": "task_transition",
                    "job_id": "j",
                    "task": "a",
                    "old_state": "ready",
                    "new_state": "running",
                    "attempt": 1,
                    "ts": 5.0,
                }
            )
        ]
    )
    assert report.tasks["a"].run_time == 0.0
    pytest.importorskip("matplotlib", reason="the [plot] extra is not installed")
    assert report.save_timeline(tmp_path / "t.png").stat().st_size > 0


def smoothie_events(*, garnish_fails: bool = True, optional: int = 1) -> list[d.Event]:
    """A 2 s job: a long task, a 4 ms optional failure (or more), and a skipped task."""
    job, t0 = "j", 1000.0
    ts = TaskState
    events: list[d.Event] = [
        JobEvent(job, JobState.IDLE, JobState.RUNNING, t0),
        TaskEvent(job, "blend", ts.UNSCHEDULED, ts.READY, 0, t0),
        TaskEvent(job, "blend", ts.READY, ts.RUNNING, 1, t0),
        TaskEvent(job, "blend", ts.RUNNING, ts.COMPLETED, 1, t0 + 2.0),
        TaskEvent(job, "never", ts.UNSCHEDULED, ts.SKIPPED, 0, t0 + 1.5),
    ]
    for i in range(optional):
        name = "garnish" if i == 0 else f"garnish-{i}"
        events += [
            TaskEvent(job, name, ts.UNSCHEDULED, ts.READY, 0, t0 + 1.0),
            TaskEvent(job, name, ts.READY, ts.RUNNING, 1, t0 + 1.0),
        ]
        if garnish_fails:
            error = RuntimeError("no sugar")
            events += [
                TaskEvent(job, name, ts.RUNNING, ts.EXCEPTION, 1, t0 + 1.004, exception=error),
                TaskEvent(job, name, ts.EXCEPTION, ts.FAILED, 1, t0 + 1.004, exception=error),
            ]
        else:
            events.append(TaskEvent(job, name, ts.RUNNING, ts.COMPLETED, 1, t0 + 1.004))
    events.append(JobEvent(job, JobState.RUNNING, JobState.COMPLETED, t0 + 2.0))
    return events


def test_an_attempt_of_4_ms_in_a_2_s_job_is_drawn_at_least_1_percent_of_the_span_wide() -> None:
    from daguerreo_actors._timeline import COLOURS, build_figure, layout

    report = JobReport.from_events(smoothie_events())
    plan = layout(report)
    garnish = next(row for row in plan.rows if row.name == "garnish")
    (bar,) = [b for b in garnish.bars if not b.queued]
    assert bar.left == pytest.approx(1.0)
    assert bar.width == pytest.approx(0.02)  # 1% of 2 s, not 4 ms
    # And in the picture: count the pixel columns of the failure's colour
    # inside the axes (the legend has a patch of it too, outside).
    import matplotlib.pyplot as plt
    import numpy as np

    fig = build_figure(report)
    try:
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)
        box = fig.axes[0].get_window_extent()
        height = pixels.shape[0]
        inside = pixels[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1)]
        red = tuple(int(COLOURS[TaskState.EXCEPTION][i : i + 2], 16) for i in (1, 3, 5))
        match = (np.abs(inside - np.array(red)) <= 8).all(axis=2)
        columns = int(match.any(axis=0).sum())
    finally:
        plt.close(fig)
    assert columns >= 6, f"the 4 ms failure is {columns} pixels wide"


def test_skipped_tasks_get_a_row_of_their_own_saying_skipped() -> None:
    from daguerreo_actors._timeline import build_figure, layout

    report = JobReport.from_events(smoothie_events())
    rows = {row.name: row for row in layout(report).rows}
    assert set(rows) == {"blend", "garnish", "never"}
    assert rows["never"].bars == ()
    assert rows["never"].label == "skipped"
    assert rows["never"].at == pytest.approx(1.5)
    import matplotlib.pyplot as plt

    fig = build_figure(report)
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["blend", "garnish", "never"]
        assert [t.get_text() for t in ax.texts] == ["skipped"]
    finally:
        plt.close(fig)


def test_a_task_that_never_ran_in_a_report_taken_mid_job_has_a_row_too() -> None:
    from daguerreo_actors._timeline import layout

    events = smoothie_events()[:2]  # the job started, "blend" is READY
    (row,) = layout(JobReport.from_events(events)).rows
    assert (row.name, row.label, row.bars) == ("blend", "never ran", ())


@pytest.mark.parametrize(
    ("optional", "title"),
    [
        (1, "job j: completed (1 optional task failed: garnish), 2.000 s"),
        (
            5,
            "job j: completed (5 optional tasks failed: garnish, garnish-1, garnish-2 +2), 2.000 s",
        ),
    ],
)
def test_the_title_of_a_job_that_completed_names_the_optional_tasks_that_failed(
    optional: int, title: str
) -> None:
    from daguerreo_actors._timeline import build_figure, layout

    report = JobReport.from_events(smoothie_events(optional=optional))
    assert layout(report).title == title
    import matplotlib.pyplot as plt

    fig = build_figure(report)
    try:
        assert fig.axes[0].get_title() == title
    finally:
        plt.close(fig)


def test_the_title_of_a_job_that_completed_cleanly_or_failed_says_so() -> None:
    from daguerreo_actors._timeline import layout

    clean = JobReport.from_events(smoothie_events(garnish_fails=False))
    assert layout(clean).title == "job j: completed, 2.000 s"
    tasks = [Task("bad", flaky(99)), Task("never", sleeper(0), dependencies=["bad"])]
    _, failed = reported(tasks, max_retries=0)
    assert layout(failed).title.endswith(f": failed (failed task: bad), {failed.wall_time:.3f} s")


def test_save_timeline_rejects_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        JobReport().save_timeline(tmp_path / "timeline.pdf")


def test_save_timeline_names_the_plot_extra_when_matplotlib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"daguerreo-actors\[plot\]"):
        JobReport().save_timeline(tmp_path / "timeline.png")
    assert not (tmp_path / "timeline.png").exists()


# -- reading log lines ----------------------------------------------------------------


def test_parse_entry_takes_our_transitions_and_nothing_else() -> None:
    ours = {
        "event": "task_transition",
        "job_id": "j",
        "task": "a",
        "old_state": "ready",
        "new_state": "running",
        "attempt": 1,
        "ts": 1.5,
    }
    assert parse_entry(json.dumps(ours)) == ours
    job = {"event": "job_transition", "job_id": "j", "old_state": "idle", "new_state": "running"}
    assert parse_entry(json.dumps({**job, "ts": 2})) is not None
    not_ours: list[str] = [
        "",
        "not json",
        "[1]",
        '"a string"',
        "[" * 100_000,
        json.dumps({**ours, "event": "other"}),
        json.dumps({**ours, "job_id": 7}),
        json.dumps({**ours, "ts": "yesterday"}),
        json.dumps({**ours, "ts": True}),
        json.dumps({**ours, "ts": math.nan}),
        json.dumps({**ours, "ts": math.inf}),
        json.dumps({**ours, "attempt": "1"}),
        json.dumps({**ours, "attempt": True}),
        json.dumps({**ours, "new_state": "idle"}),  # a job state on a task
        json.dumps({**job, "ts": 2, "new_state": "ready"}),  # a task state on the job
        json.dumps({k: v for k, v in ours.items() if k != "task"}),
        json.dumps({k: v for k, v in ours.items() if k != "old_state"}),
    ]
    for line in not_ours:
        assert parse_entry(line) is None, line
