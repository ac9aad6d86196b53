"""The engine's structlog entries, and configure_logging's JSON lines."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import WAIT, Ctx, IsActive, fails_once

import daguerreo_actors as d
from daguerreo_actors import JobReport, JobState, Task
from daguerreo_actors import _configure_logging as configure_module
from daguerreo_actors._logfile import parse_entry


def napper(seconds: float) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        time.sleep(seconds)
        return {"secret": "hunter2", "other": 1}

    return fn


def thrower(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise ValueError("always")


@pytest.fixture(autouse=True)
def _close_log_files() -> Iterator[None]:
    yield
    # Configuring again with a stream closes any file a test had opened.
    d.configure_logging(json_file=io.StringIO())


def run_ok(tasks: list[Task], **options: Any) -> d.Job:
    job = d.run(tasks, **options)
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)  # the log entries are written too
    return job


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the entries ----------------------------------------------------------------------


def test_task_entries_carry_what_reconstructs_the_job(logs: list[dict[str, Any]]) -> None:
    before = time.time()
    tasks = [Task("nap", napper(0.1)), Task("after", napper(0), dependencies=["nap"])]
    job = run_ok(tasks)
    after = time.time()
    entries = [e for e in logs if e["event"] == "task_transition"]
    assert {e["job_id"] for e in entries} == {job.id}
    for e in entries:
        assert {"task", "old_state", "new_state", "attempt", "ts"} <= e.keys()
        assert isinstance(e["ts"], float)
        assert before <= e["ts"] <= after
    by_step = {(e["task"], e["old_state"], e["new_state"]): e for e in entries}
    assert by_step["nap", "unscheduled", "ready"]["dependencies"] == []
    assert by_step["after", "unscheduled", "ready"]["dependencies"] == ["nap"]
    done = by_step["nap", "running", "completed"]
    assert done["attempt"] == 1
    assert 0.08 <= done["duration"] <= 0.5
    assert sorted(done["result_keys"]) == ["other", "secret"]
    assert "result" not in done
    assert "hunter2" not in repr(logs)  # values never, by default
    assert "duration" not in by_step["nap", "ready", "running"]
    assert "dependencies" not in by_step["nap", "ready", "running"]


def test_job_entries_carry_ts_and_the_duration_at_the_end(logs: list[dict[str, Any]]) -> None:
    job = run_ok([Task("nap", napper(0.05))])
    entries = [e for e in logs if e["event"] == "job_transition"]
    assert [(e["old_state"], e["new_state"]) for e in entries] == [
        ("idle", "running"),
        ("running", "completed"),
    ]
    assert all(e["job_id"] == job.id and isinstance(e["ts"], float) for e in entries)
    assert "duration" not in entries[0]
    assert 0.04 <= entries[1]["duration"] <= 1.0
    assert entries[0]["ts"] <= entries[1]["ts"]


def test_failures_carry_the_error_type_and_message(logs: list[dict[str, Any]]) -> None:
    run_ok([Task("flaky", fails_once())])
    [exception] = [e for e in logs if e.get("new_state") == "exception"]
    assert exception["error_type"] == "KeyError"
    assert exception["error"] == str(KeyError("first\nattempt"))
    assert exception["attempt"] == 1
    assert exception["duration"] >= 0
    result = d.run([Task("bad", thrower, max_retries=0)]).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    [failed] = [e for e in logs if e.get("new_state") == "failed" and "task" in e]
    assert (failed["error_type"], failed["error"]) == ("ValueError", "always")


def test_a_timed_out_attempt_logs_its_own_duration_even_when_retried_at_once(
    logs: list[dict[str, Any]],
) -> None:
    release = threading.Event()

    def stuck(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
        release.wait(WAIT)
        return {}

    try:
        d.run([Task("a", stuck, timeout=0.1, max_retries=1, overlap=True)]).get(timeout=WAIT)
    finally:
        release.set()
    timed_out = [e for e in logs if e.get("new_state") == "timed_out"]
    assert len(timed_out) == 2
    assert all(0.09 <= e["duration"] < 1.0 for e in timed_out), timed_out


def test_log_values_puts_the_result_in_the_entry(logs: list[dict[str, Any]]) -> None:
    run_ok([Task("nap", napper(0))], log_values=True)
    [done] = [e for e in logs if e.get("new_state") == "completed" and "task" in e]
    assert done["result"] == {"secret": "hunter2", "other": 1}
    assert sorted(done["result_keys"]) == ["other", "secret"]


# -- configure_logging -------------------------------------------------------------------


def test_configure_logging_writes_json_lines_that_tail_and_summary_read(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"earlier": "content"}\n')
    d.configure_logging(json_file=path, level="debug")
    job = run_ok([Task("flaky", fails_once()), Task("nap", napper(0), dependencies=["flaky"])])
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": "content"}'  # appended to, not truncated
    entries = [json.loads(line) for line in lines[1:]]
    assert all(parse_entry(line) is not None for line in lines[1:])
    assert all(e["job_id"] == job.id for e in entries)
    assert all(e["timestamp"].endswith("Z") for e in entries)  # ISO 8601, UTC
    levels = {(e.get("task"), e["new_state"]): e["level"] for e in entries}
    assert levels[None, "running"] == "info"
    assert levels["flaky", "exception"] == "warning"
    assert levels["nap", "completed"] == "debug"
    [exception] = [e for e in entries if e["new_state"] == "exception"]
    assert exception["error_type"] == "KeyError"
    assert "traceback" not in exception  # retried: the message is enough
    assert "exception" not in exception
    report = JobReport.from_log(path)
    assert report.state is JobState.COMPLETED
    assert report.critical_path == ["flaky", "nap"]
    assert len(report.tasks["flaky"].attempts) == 2


def test_at_info_only_job_transitions_and_task_failures_are_written(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    d.configure_logging(json_file=str(path))
    run_ok([Task("flaky", fails_once()), Task("nap", napper(0))])
    entries = read_json_lines(path)
    assert [(e.get("task"), e["new_state"], e["level"]) for e in entries] == [
        (None, "running", "info"),
        ("flaky", "exception", "warning"),
        (None, "completed", "info"),
    ]


def test_a_numeric_level_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    d.configure_logging(json_file=path, level=logging.WARNING)
    run_ok([Task("flaky", fails_once())])
    assert [e["new_state"] for e in read_json_lines(path)] == ["exception"]


def test_without_a_file_entries_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    d.configure_logging(level="DEBUG")
    job = run_ok([Task("nap", napper(0))])
    captured = capsys.readouterr()
    assert captured.out == ""
    entries = [json.loads(line) for line in captured.err.splitlines()]
    assert len(entries) == 5
    assert {e["job_id"] for e in entries} == {job.id}


def test_an_open_stream_is_written_and_left_open() -> None:
    stream = io.StringIO()
    d.configure_logging(json_file=stream, level="debug")
    run_ok([Task("nap", napper(0))])
    d.configure_logging(json_file=io.StringIO())
    assert not stream.closed
    assert len(stream.getvalue().splitlines()) == 5


def test_configuring_again_closes_the_file_it_had_opened(tmp_path: Path) -> None:
    d.configure_logging(json_file=tmp_path / "first.jsonl")
    first = configure_module._log_file
    assert first is not None
    assert not first.closed
    d.configure_logging(json_file=tmp_path / "second.jsonl")
    assert first.closed
    d.configure_logging(json_file=io.StringIO())
    assert configure_module._log_file is None


@pytest.mark.parametrize(
    ("level", "error"),
    [("loud", ValueError), (None, TypeError), (True, TypeError), (1.5, TypeError)],
)
def test_a_bad_level_is_rejected(level: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="level"):
        d.configure_logging(json_file=io.StringIO(), level=level)


def test_values_json_cannot_hold_are_logged_as_their_repr(tmp_path: Path) -> None:
    circular: list[Any] = []
    circular.append(circular)

    def odd(_ctx: Ctx, _is_active: IsActive) -> dict[Any, Any]:
        return {(1, 2): "tuple key", "loop": circular, "obj": object()}

    path = tmp_path / "log.jsonl"
    d.configure_logging(json_file=path, level="debug")
    run_ok([Task("odd", odd)], log_values=True)
    [done] = [e for e in read_json_lines(path) if e["new_state"] == "completed" and "task" in e]
    assert done["result_keys"] == ["(1, 2)", "loop", "obj"]
    assert "tuple key" in done["result"]
    assert isinstance(done["result"], str)


# -- logging never breaks a job -------------------------------------------------------


# The writer reports the failing processor once, as this test means it to.
@pytest.mark.filterwarnings("ignore:daguerreo_actors. logging an entry raised:RuntimeWarning")
def test_logging_that_raises_outside_the_job_actor_breaks_nothing() -> None:
    def explode(_logger: Any, _name: str, entry: dict[str, Any]) -> dict[str, Any]:
        if entry["event"] in ("late_result_discarded", "listener_failed"):
            raise SystemExit("a processor gone mad")
        return entry

    structlog.configure(
        processors=[explode, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(open("/dev/null", "w")),  # noqa: SIM115
    )
    release = threading.Event()

    def late(_c: Mapping[str, Any], _a: Callable[[], bool]) -> dict[str, Any]:
        release.wait(WAIT)
        return {"late": True}

    class Hostile:
        calls = 0

        def __repr__(self) -> str:
            raise SystemExit("no repr")

        def __call__(self, _event: d.Event) -> None:
            Hostile.calls += 1
            raise RuntimeError("listener bug")

    hostile = Hostile()
    job = d.run(
        [
            Task("slow", late, timeout=0.05, max_retries=0, continue_on_failure=True),
            Task("fine", lambda c, a: {"fine": True}),
        ],
        listeners=[hostile],
    )
    try:
        result = job.get(timeout=WAIT)
    finally:
        release.set()
    assert result.state is JobState.COMPLETED
    assert result.ctx == {"fine": True}
    assert job.wait_for_listeners(WAIT)
    assert Hostile.calls == 2 + 3 + 4  # every event reached the listener


# -- the library leaves logging alone ---------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, which must succeed."""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_a_job_imports_structlog_only_when_it_writes_an_entry() -> None:
    # Importing structlog (it pulls in rich) cost the first job 60-100 ms,
    # and stamped its first JobEvent that late.
    code = (
        "import sys, daguerreo_actors as d\n"
        "from daguerreo_actors._logwriter import flush\n"
        "def f(ctx, is_active): return {}\n"
        "def boom(ctx, is_active): raise ValueError('nope')\n"
        "assert d.run([d.Task('a', f)]).get(timeout=10).ok\n"
        "assert 'structlog' not in sys.modules, 'imported by a quiet job'\n"
        "assert not d.run([d.Task('b', boom, max_retries=0)]).get(timeout=10).ok\n"
        "assert flush(10)\n"
        "assert 'structlog' in sys.modules\n"
    )
    completed = run_python(code)
    # The failure's entries are written all the same, with the job's id.
    assert "task_transition" in completed.stdout
    assert "error_type=ValueError" in completed.stdout
    assert "job_id=" in completed.stdout


def test_importing_the_library_does_not_configure_logging() -> None:
    code = (
        "import structlog, daguerreo_actors as d\n"
        "assert not structlog.is_configured()\n"
        "def f(ctx, is_active): return {}\n"
        "assert d.run([d.Task('a', f)]).get(timeout=10).ok\n"
        "assert not structlog.is_configured()\n"
        "print('ok')\n"
    )
    completed = run_python(code)
    # Unconfigured, the per-task debug and info entries stay quiet.
    assert completed.stdout == "ok\n"
    assert completed.stderr == ""
