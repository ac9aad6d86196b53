"""event_logger and ProgressListener: the listeners for people at a terminal."""

from __future__ import annotations

import io
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from conftest import examples
from helpers import UNSAFE_CATEGORIES, WAIT, Ctx, IsActive, fails_once
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import daguerreo_actors as d
from daguerreo_actors import JobEvent, JobState, ProgressListener, Task, TaskEvent, TaskState
from daguerreo_actors._console import format_elapsed

SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def step(key: str) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        return {key: True}

    return fn


def broken(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise RuntimeError("always")


def run_to_end(
    tasks: list[Task],
    listener: Callable[[d.Event], Any],
    listeners_also: Sequence[Callable[[d.Event], Any]] = (),
    **options: Any,
) -> d.JobResult:
    job = d.run(tasks, listeners=[listener, *listeners_also], **options)
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


def sleeper(seconds: float) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    """Sleep (polling is_active) for ``seconds``, then return nothing."""

    def fn(_ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while is_active() and time.monotonic() < deadline:
            time.sleep(0.005)
        return {}

    return fn


def final_line(buffer: io.StringIO) -> str:
    return SGR.sub("", buffer.getvalue()).replace("\r", "\n").splitlines()[-1]


def clock_of(line: str) -> float:
    match = re.search(r"  (\d+\.\d)s  ", line)
    assert match is not None, line
    return float(match.group(1))


def feed(progress: ProgressListener, *changes: tuple[str, TaskState, TaskState]) -> None:
    """Events by hand: the job starts, then each (task, old, new)."""
    t = time.time()
    progress(JobEvent("j", JobState.IDLE, JobState.RUNNING, t))
    for task, old, new in changes:
        progress(TaskEvent("j", task, old, new, 1, t))


U, R, RUN = TaskState.UNSCHEDULED, TaskState.READY, TaskState.RUNNING


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
    final = final_line(buffer)
    assert final.startswith("demo ")
    assert " 4/4 " in final
    assert final.endswith("running 0  retrying 0  failed 0  completed")


def test_a_job_that_times_out_counts_only_completed_tasks_as_done_and_says_so() -> None:
    # The case: 8 tasks, a 1 s job timeout, 2 completed. The display
    # used to say 8/8 and 0:00:00.
    buffer = io.StringIO()
    progress = ProgressListener(8, console=console(buffer, terminal=False))
    tasks = [
        Task("a", sleeper(0.05)),
        Task("b", sleeper(0.05)),
        Task("slow-1", sleeper(30), dependencies=["a"]),
        Task("slow-2", sleeper(30), dependencies=["b"]),
        *(Task(f"later-{i}", sleeper(0), dependencies=["slow-1", "slow-2"]) for i in range(4)),
    ]
    result = run_to_end(tasks, progress, timeout=1.0, max_concurrency=4)
    assert result.state is JobState.TIMED_OUT
    final = final_line(buffer)
    assert " 2/8 " in final
    assert "running 0  retrying 0  failed 0  cancelled 2  skipped 4  timed_out" in final
    assert final.endswith("timed_out")
    # The job's own clock: about the timeout, not 0.
    assert 0.7 <= clock_of(final) <= 1.5
    assert progress.counts == {
        "done": 2,
        "running": 0,
        "retrying": 0,
        "failed": 0,
        "cancelled": 2,
        "skipped": 4,
    }


def test_a_failed_job_counts_the_failed_task_apart_and_ends_with_failed() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(4, console=console(buffer, terminal=False))
    tasks = [
        Task("a", step("a")),
        Task("b", step("b")),
        Task("bad", broken, dependencies=["a", "b"], max_retries=0),
        Task("after", step("x"), dependencies=["bad"]),
    ]
    assert run_to_end(tasks, progress).state is JobState.FAILED
    final = final_line(buffer)
    assert " 2/4 " in final
    assert final.endswith("failed 1  upstream_failed 1  failed")


def test_the_progress_display_counts_failures_of_optional_tasks() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(3, console=console(buffer, terminal=False))
    tasks = [
        Task("a", step("a")),
        Task("optional", broken, continue_on_failure=True, max_retries=0),
        Task("c", step("c"), dependencies=["a"]),
    ]
    assert run_to_end(tasks, progress).ok
    final = final_line(buffer)
    assert " 2/3 " in final
    assert final.endswith("running 0  retrying 0  failed 1  completed")


def test_a_bad_result_counts_as_failed() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(1, console=console(buffer, terminal=False))
    assert run_to_end([Task("none", lambda _c, _a: None)], progress).state is JobState.FAILED
    final = final_line(buffer)
    assert " 0/1 " in final
    assert final.endswith("running 0  retrying 0  failed 1  failed")
    assert progress.counts["failed"] == 1
    assert progress.counts["done"] == 0


@pytest.mark.parametrize(
    "state", [s for s in TaskState if s.is_terminal and s is not TaskState.COMPLETED]
)
def test_every_terminal_state_but_completed_is_counted_apart_not_done(state: TaskState) -> None:
    # Generic over TaskState: a terminal state added later is counted too.
    buffer = io.StringIO()
    progress = ProgressListener(2, console=console(buffer, terminal=False))
    feed(progress, ("a", U, R), ("a", R, RUN), ("a", RUN, TaskState.COMPLETED), ("b", U, state))
    progress(JobEvent("j", JobState.RUNNING, JobState.CANCELLED, time.time()))
    counts = progress.counts
    assert counts["done"] == 1
    bucket = "failed" if state is TaskState.INVALID_RESULT else state.value
    assert counts[bucket] == 1
    assert sum(counts.values()) == 2
    assert " 1/2 " in final_line(buffer)
    assert f"  {bucket} 1" in final_line(buffer)


def test_without_a_total_the_progress_display_counts_the_tasks_it_saw() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(console=console(buffer, terminal=False))
    tasks = [Task("a", step("a")), Task("b", fails_once(), max_retries=3)]
    assert run_to_end(tasks, progress).ok
    final = final_line(buffer)
    assert " 2/2 " in final
    assert final.endswith("retrying 0  failed 0  completed")


def test_the_progress_display_counts_running_and_retrying_tasks() -> None:
    # Events fed by hand: the job is cancelled while "a" waits for a retry
    # and "b" runs, so the final rendering shows both counts.
    buffer = io.StringIO()
    progress = ProgressListener(3, console=console(buffer, terminal=False))
    feed(
        progress,
        ("a", U, R),
        ("b", U, R),
        ("a", R, RUN),
        ("b", R, RUN),
        ("a", RUN, TaskState.EXCEPTION),
        ("a", TaskState.EXCEPTION, R),
        ("c", U, TaskState.SKIPPED),
    )
    assert progress.line().plain.endswith("running 1: b  retrying 1  failed 0  skipped 1")
    progress(JobEvent("j", JobState.RUNNING, JobState.CANCELLED, time.time()))
    final = final_line(buffer)
    assert " 0/3 " in final
    assert final.endswith("running 1: b  retrying 1  failed 0  skipped 1  cancelled")
    assert progress.state == "cancelled"


def test_the_display_names_the_first_three_running_tasks_then_counts_the_rest() -> None:
    progress = ProgressListener(6, console=console(io.StringIO(), terminal=False))
    names = ["one", "two", "three", "four", "five"]
    feed(progress, *((n, R, RUN) for n in names))
    assert "running 5: one, two, three +2  retrying 0" in progress.line().plain
    feed(progress, ("one", RUN, TaskState.COMPLETED), ("three", RUN, TaskState.COMPLETED))
    assert "running 3: two, four, five  retrying 0" in progress.line().plain
    assert progress.running == ["two", "four", "five"]
    progress(JobEvent("j", JobState.RUNNING, JobState.CANCELLED, time.time()))
    assert progress.line().plain.endswith("  cancelled")


def test_running_task_names_are_shown_as_text_not_markup_and_escaped() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(1, console=console(buffer, terminal=True))
    feed(progress, ("[red]x[/red]\x1b[2J", R, RUN))
    progress(JobEvent("j", JobState.RUNNING, JobState.CANCELLED, time.time()))
    assert "running 1: [red]x[/red]\\x1b[2J  retrying" in final_line(buffer)
    assert "\x1b[2J" not in buffer.getvalue()


def test_the_clock_runs_while_the_job_runs_and_stops_at_its_wall_time() -> None:
    # On a terminal the line is redrawn ten times a second: the clock must
    # advance (it read 0:00:00 throughout before).
    buffer = io.StringIO()
    progress = ProgressListener(1, console=console(buffer, terminal=True))
    assert run_to_end([Task("nap", sleeper(0.6))], progress).ok
    frames = SGR.sub("", buffer.getvalue()).replace("\r", "\n").splitlines()
    clocks = [clock_of(f) for f in frames if re.search(r"  \d+\.\ds  ", f)]
    assert len(set(clocks)) >= 3, clocks
    assert clocks == sorted(clocks)
    assert 0.5 <= clocks[-1] <= 1.5
    assert "running 1: nap" in "\n".join(frames)


def test_lines_printed_through_the_display_are_whole_lines_never_cut_by_it() -> None:
    # event_logger prints through the display's console: on a terminal each
    # line lands above the live line, whole; the live line is drawn again
    # below it. Before, the two wrote to the terminal apart and a line could
    # be cut by a redraw ("...completed 0:00:00garnish > running -> completed").
    buffer = io.StringIO()
    progress = ProgressListener(6, console=console(buffer, terminal=True))
    lines: list[str] = []
    log = d.event_logger(lambda line: (lines.append(line), progress.print(line)))
    tasks = [Task(f"t{i}", sleeper(0.02 * i)) for i in range(6)]
    assert run_to_end(tasks, log, listeners_also=[progress]).ok
    # Every control sequence and redraw removed, what is left is whole lines.
    shown = SGR.sub("", buffer.getvalue()).replace("\r", "\n").splitlines()
    printed = [line for line in shown if " > " in line]
    assert printed == lines
    assert len(lines) == 2 + 6 * 3


def test_the_display_and_event_logger_share_one_console_and_never_interleave() -> None:
    # Without a terminal: the event lines and the final line are whole, and
    # the display prints nothing else into the lines.
    buffer = io.StringIO()
    progress = ProgressListener(20, console=console(buffer, terminal=False))
    log = d.event_logger(progress.print)
    tasks = [Task(f"t{i}", sleeper(0.001 * i)) for i in range(20)]
    assert run_to_end(tasks, log, listeners_also=[progress]).ok
    shown = buffer.getvalue().splitlines()
    assert len(shown) == 2 + 20 * 3 + 1
    assert sum(1 for line in shown if re.fullmatch(r"(JOB|t\d+) > [a-z_]+ -> [a-z_]+", line)) == 62
    assert [line for line in shown if "20/20" in line] == [
        line for line in shown if line.startswith("job ")
    ]


def test_progress_print_escapes_control_characters_and_markup() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(1, console=console(buffer, terminal=False))
    progress.print("[bold]x\x1b[31m")
    assert buffer.getvalue() == "[bold]x\\x1b[31m\n"
    assert progress.console.file is buffer


def test_a_transient_display_leaves_nothing_behind() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(1, console=console(buffer, terminal=False), transient=True)
    assert run_to_end([Task("a", step("a"))], progress).ok
    assert buffer.getvalue() == ""


def test_the_progress_description_is_shown_as_text_not_markup() -> None:
    buffer = io.StringIO()
    progress = ProgressListener(
        1, console=console(buffer, terminal=False), description="x[/bold] [red]y\x1b[2J"
    )
    assert run_to_end([Task("a", step("a"))], progress).ok
    final = buffer.getvalue().splitlines()[-1]
    assert final.startswith("x[/bold] [red]y\\x1b[2J ")
    assert " 1/1 " in final


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0.0s"), (0.26, "0.3s"), (59.9, "59.9s"), (61, "0:01:01"), (3725, "1:02:05")],
)
def test_format_elapsed_shows_tenths_under_a_minute_and_h_mm_ss_above(
    seconds: float, shown: str
) -> None:
    assert format_elapsed(seconds) == shown


def test_a_followed_job_shows_each_running_tasks_progress_and_its_overrunning_attempts() -> None:
    import threading

    halfway = threading.Event()
    release = threading.Event()

    def work(_ctx: Ctx, is_active: Callable[..., bool]) -> dict[str, Any]:
        is_active("3/10 files")
        halfway.set()
        assert release.wait(WAIT)
        return {}

    progress = ProgressListener(1, console=console(io.StringIO(), terminal=False))
    job = progress.follow(
        d.run([Task("copy", work, timeout=0.3, max_retries=0)], listeners=[progress])
    )
    try:
        assert halfway.wait(WAIT)
        assert "running 1: copy (3/10 files)" in progress.line().plain
        job.get(timeout=WAIT)  # timed out: its code still runs
        assert job.wait_for_listeners(WAIT)
        assert "overrunning 1" in progress.line().plain
    finally:
        release.set()
    assert job.wait_stopped(timeout=WAIT)
    assert "overrunning" not in progress.line().plain
