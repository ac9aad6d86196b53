"""event_logger and ProgressListener: the listeners for people at a terminal."""

from __future__ import annotations

import io
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from conftest import examples
from helpers import UNSAFE_CATEGORIES, WAIT, Ctx, IsActive, fails_once
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobState, ProgressListener, Task, TaskEvent, TaskState

SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def step(key: str) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        return {key: True}

    return fn


def broken(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise RuntimeError("always")


def run_to_end(
    tasks: list[Task], listener: Callable[[d.Event], Any], **options: Any
) -> d.JobResult:
    job = d.run(tasks, listeners=[listener], **options)
    result: d.JobResult = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result


def console(buffer: io.StringIO, *, terminal: bool) -> Console:
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None)


# -- event_logger ---------------------------------------------------------------------


def test_event_logger_prints_daguerreo_style_lines_for_the_job_and_its_tasks() -> None:
    lines: list[str] = []
    tasks = [Task("dice", step("diced")), Task("blend", step("blended"), dependencies=["dice"])]
    assert run_to_end(tasks, d.event_logger(lines.append)).ok
    assert lines == [
        "JOB > idle -> running",
        "dice > unscheduled -> ready",
        "dice > ready -> running",
        "dice > running -> completed",
        "blend > unscheduled -> ready",
        "blend > ready -> running",
        "blend > running -> completed",
        "JOB > running -> completed",
    ]


def test_event_logger_prints_with_print_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_to_end([Task("blend", step("x"))], d.event_logger()).ok
    out = capsys.readouterr().out
    assert "JOB > idle -> running\n" in out
    assert "blend > ready -> running\n" in out
    assert out.endswith("JOB > running -> completed\n")


def test_event_logger_shows_retries_and_failures() -> None:
    lines: list[str] = []
    result = run_to_end([Task("bad", broken)], d.event_logger(lines.append), max_retries=1)
    assert result.state is JobState.FAILED
    assert lines[-4:] == [
        "bad > ready -> running",
        "bad > running -> exception",
        "bad > exception -> failed",
        "JOB > running -> failed",
    ]
    assert "bad > exception -> ready" in lines


task_names = st.one_of(
    st.text(min_size=1, max_size=20),
    st.lists(
        st.sampled_from(["\x1b[31m", "\x1b]0;t\x07", "\u202e", "\r", "\x07", "\n", "\x9b", "a"]),
        min_size=1,
        max_size=6,
    ).map("".join),
)


@settings(max_examples=examples(200))
@given(name=task_names)
def test_event_logger_lines_never_carry_a_raw_control_character(name: str) -> None:
    lines: list[str] = []
    log = d.event_logger(lines.append)
    log(TaskEvent("j", name, TaskState.READY, TaskState.RUNNING, 1, 0.0))
    log(JobEvent("j", JobState.IDLE, JobState.RUNNING, 0.0))
    assert len(lines) == 2
    assert [c for c in lines[0] if unicodedata.category(c) in UNSAFE_CATEGORIES] == []
    assert lines[0].endswith(" > ready -> running")


# -- ProgressListener -----------------------------------------------------------------


@pytest.mark.parametrize("terminal", [False, True])
def test_the_progress_display_ends_showing_every_task_done(terminal: bool) -> None:
    buffer = io.StringIO()
    progress = ProgressListener(4, console=console(buffer, terminal=terminal), description="demo")
    tasks = [
        Task("a", step("a")),
        Task("b", step("b"), dependencies=["a"]),
        Task("c", step("c"), dependencies=["a"]),
        Task("d", step("d"), dependencies=["b", "c"]),
    ]
    assert run_to_end(tasks, progress).ok
    assert progress.state == "completed"
    final = SGR.sub("", buffer.getvalue()).replace("\r", "\n").splitlines()[-1]
    assert "demo" in final
    assert "4/4" in final
    assert "running 0  retrying 0  failed 0  completed" in final


def test_the_progress_display_counts_failures_of_optional_tasks() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(3, console=console(buffer, terminal=False))
    tasks = [
        Task("a", step("a")),
        Task("optional", broken, continue_on_failure=True, max_retries=0),
        Task("c", step("c"), dependencies=["a"]),
    ]
    assert run_to_end(tasks, progress).ok
    final = buffer.getvalue().splitlines()[-1]
    assert "3/3" in final
    assert "running 0  retrying 0  failed 1  completed" in final


def test_without_a_total_the_progress_display_counts_the_tasks_it_saw() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(console=console(buffer, terminal=False))
    tasks = [Task("a", step("a")), Task("b", fails_once(), max_retries=3)]
    assert run_to_end(tasks, progress).ok
    final = buffer.getvalue().splitlines()[-1]
    assert "2/2" in final
    assert "retrying 0  failed 0  completed" in final


def test_the_progress_display_counts_running_and_retrying_tasks() -> None:
    # Events fed by hand: the job is cancelled while "a" waits for a retry
    # and "b" runs, so the final rendering shows both counts.
    buffer = io.StringIO()
    progress = ProgressListener(3, console=console(buffer, terminal=False))
    t = time.time()
    events: list[d.Event] = [
        JobEvent("j", JobState.IDLE, JobState.RUNNING, t),
        TaskEvent("j", "a", TaskState.UNSCHEDULED, TaskState.READY, 0, t),
        TaskEvent("j", "b", TaskState.UNSCHEDULED, TaskState.READY, 0, t),
        TaskEvent("j", "a", TaskState.READY, TaskState.RUNNING, 1, t),
        TaskEvent("j", "b", TaskState.READY, TaskState.RUNNING, 1, t),
        TaskEvent("j", "a", TaskState.RUNNING, TaskState.EXCEPTION, 1, t),
        TaskEvent("j", "a", TaskState.EXCEPTION, TaskState.READY, 1, t),
        TaskEvent("j", "c", TaskState.UNSCHEDULED, TaskState.SKIPPED, 0, t),
        JobEvent("j", JobState.RUNNING, JobState.CANCELLED, t),
    ]
    for event in events:
        progress(event)
    final = buffer.getvalue().splitlines()[-1]
    assert "1/3" in final
    assert "running 1  retrying 1  failed 0  cancelled" in final
    assert progress.state == "cancelled"


def test_the_progress_description_is_shown_as_text_not_markup() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(
        1, console=console(buffer, terminal=False), description="x[/bold] [red]y\x1b[2J"
    )
    assert run_to_end([Task("a", step("a"))], progress).ok
    final = buffer.getvalue().splitlines()[-1]
    assert final.startswith("x[/bold] [red]y\\x1b[2J ")
    assert "1/1" in final
