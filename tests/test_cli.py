"""The command line through its real entry points, in subprocesses.

``python -m daguerreo_actors`` and the ``daguerreo-actors`` console script:
run (exit codes, Ctrl-C), graph, validate, tail (filters, garbage, --follow
through growth, truncation and rotation) and summary. The task lists live in
``cli_tasks.py``, put on the subprocess's PYTHONPATH. A few property tests
drive ``tail`` and ``summary`` in-process (click's CliRunner) with hostile
task names: nothing printed may carry a raw control or bidi character.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import examples
from helpers import unsafe_chars
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from daguerreo_actors.cli import format_entry, main

TESTS_DIR = Path(__file__).parent
SCRIPT = Path(sys.executable).parent / "daguerreo-actors"
WAIT = 30.0  # deadline for a subprocess that should end by itself
LINE_WAIT = 10.0  # deadline for one line from `tail --follow`
JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_JOB_ID = "fedcba9876543210fedcba9876543210"

SGR = re.compile(r"\x1b\[[0-9;]*m")
EVIL_PIECES = [
    *("\x1b[31m", "\x1b]0;title\x07", "\u202e", "\u2067", "\r", "\x07", "\n"),
    *("\u2028", "\x9b", "\x7f", "\ud800", "\\", '"', "[red]", "$x$"),
]


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "PYTHONIOENCODING", "COLUMNS")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    script: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the command line to its end (within WAIT seconds)."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "daguerreo_actors"]
    completed = subprocess.run(
        [*command, *args],
        input=stdin,
        capture_output=True,
        timeout=WAIT,
        env=env or cli_env(),
        cwd=cwd,
        check=False,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8", "surrogateescape"),
        completed.stderr.decode("utf-8", "surrogateescape"),
    )


def entry(
    task: str | None,
    old: str,
    new: str,
    *,
    job_id: str = JOB_ID,
    ts: float | None = None,
    **extra: Any,
) -> str:
    """One JSON log line, as configure_logging writes them."""
    record: dict[str, Any] = {"job_id": job_id, "old_state": old, "new_state": new}
    if task is None:
        record["event"] = "job_transition"
    else:
        record.update(event="task_transition", task=task, attempt=extra.pop("attempt", 0))
    record["ts"] = time.time() if ts is None else ts
    record.update(extra)
    record.update(level="debug", timestamp="2024-01-01T00:00:00Z")
    return json.dumps(record) + "\n"


def job_log(
    name: str = "a",
    *,
    job_id: str = JOB_ID,
    start: float = 1_700_000_000.0,
    error: str = "no\x1b[2J",
) -> str:
    """A whole job of one task that fails once, then completes."""
    return "".join(
        [
            entry(None, "idle", "running", job_id=job_id, ts=start),
            entry(name, "unscheduled", "ready", job_id=job_id, ts=start, dependencies=[]),
            entry(name, "ready", "running", job_id=job_id, ts=start + 0.1, attempt=1),
            entry(
                name,
                "running",
                "exception",
                job_id=job_id,
                ts=start + 0.3,
                attempt=1,
                duration=0.2,
                error_type="ValueError",
                error=error,
            ),
            entry(name, "exception", "ready", job_id=job_id, ts=start + 0.3, attempt=1),
            entry(name, "ready", "running", job_id=job_id, ts=start + 0.3, attempt=2),
            entry(
                name,
                "running",
                "completed",
                job_id=job_id,
                ts=start + 0.5,
                attempt=2,
                duration=0.2,
                result_keys=["x"],
            ),
            entry(None, "running", "completed", job_id=job_id, ts=start + 0.5, duration=0.5),
        ]
    )


# -- run ------------------------------------------------------------------------------


def test_run_prints_the_final_state_and_one_line_per_ctx_key_and_exits_0() -> None:
    completed = cli("run", "cli_tasks:OPAQUE")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"opaque  object\s+<object object at 0x[0-9a-f]+>", lines[0])
    assert re.fullmatch(r"number  int\s+42", lines[1])
    assert "state: completed" in completed.stderr
    assert " 1/1 " in completed.stderr  # the progress display's last line
    assert completed.stderr.splitlines()[-2].endswith("completed")


def test_run_prints_a_large_ctx_in_a_few_short_lines() -> None:
    # 5 MB of bytes and a 200,000-item list used to print 28.5 MB in
    # 200,005 lines; now a line per key, cut to the terminal's width.
    started = time.monotonic()
    completed = cli("run", "cli_tasks:BIG", env=cli_env(COLUMNS="100"))
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == 3
    assert all(len(line) <= 100 for line in lines), lines
    blob, items, name = lines
    assert re.match(r"blob   bytes\s+5,242,880 bytes  b'\\x00\\x00", blob)
    assert blob.endswith("\u2026")
    assert re.match(r"items  list\s+200,000 items  \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]$", items)
    assert re.match(r"name   str\s+8 chars  'smoothie'$", name)
    assert elapsed < 10


def test_run_output_json_writes_the_whole_ctx_as_json() -> None:
    completed = cli("run", "cli_tasks:make_tasks", "--ctx", '{"start": 41}', "--output", "json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"start": 41, "sum": 42, "two": True}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cli_tasks:OPAQUE", "ctx key 'opaque': a value of type object is not JSON"),
        ("cli_tasks:ODD", "ctx key 'when': a value of type datetime is not JSON"),
        ("cli_tasks:BIG", "ctx key 'blob': a value of type bytes is not JSON"),
    ],
)
def test_run_output_json_refuses_a_value_that_is_not_json_naming_the_key(
    spec: str, message: str
) -> None:
    # It used to write the value's repr as a JSON string.
    completed = cli("run", spec, "--output", "json")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "state: completed" in completed.stderr
    assert "Usage: " in completed.stderr
    assert message in completed.stderr
    assert "use --output repr" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_run_output_json_refuses_a_key_that_is_not_a_string_instead_of_coercing_it() -> None:
    # The int key 1 used to become "1".
    completed = cli("run", "cli_tasks:INT_KEY", "--output", "json")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "ctx key 1 (int key): the key is not a string" in completed.stderr
    nested = cli("run", "cli_tasks:INT_KEY", "--output", "json", "--keys", "nested")
    assert nested.returncode == 2
    assert "ctx key 'nested': the key 2 is not a string (at [0])" in nested.stderr
    fine = cli("run", "cli_tasks:INT_KEY", "--output", "json", "--keys", "ok")
    assert fine.returncode == 0, fine.stderr
    assert json.loads(fine.stdout) == {"ok": True}


def test_run_reports_keys_that_are_not_strings_as_they_are() -> None:
    completed = cli("run", "cli_tasks:ODD")
    assert completed.returncode == 0, completed.stderr
    assert re.search(r"^1 \(int key\)\s+str\s+3 chars  'one'$", completed.stdout, re.M)
    assert re.search(r"^when\s+datetime\s+datetime\.datetime\(2024, 1, 2", completed.stdout, re.M)


def test_run_keys_selects_keys_and_names_the_ones_missing() -> None:
    completed = cli("run", "cli_tasks:BIG", "--keys", "name", "--keys", "nowhere,items")
    assert completed.returncode == 0, completed.stderr
    assert [line.split()[0] for line in completed.stdout.splitlines()] == ["name", "items"]
    assert "not in the ctx: 'nowhere'" in completed.stderr


def test_run_output_repr_prints_every_value_in_full() -> None:
    completed = cli("run", "cli_tasks:ODD", "--output", "repr")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "'when': datetime.datetime(2024, 1, 2, 3, 4, 5)",
        "1: 'one'",
        "'ok': [1, 2]",
    ]


def test_run_prints_what_a_task_returned_that_was_not_a_mapping() -> None:
    # It used to say only "failed task: returns-none (invalid_result)".
    none = cli("run", "cli_tasks:RETURNS_NONE")
    assert none.returncode == 1
    assert (
        "failed task: returns-none (invalid_result): task 'returns-none' returned None; "
        "a task must return a mapping (return {} for no output)"
    ) in none.stderr
    listed = cli("run", "cli_tasks:RETURNS_LIST")
    assert listed.returncode == 1
    assert (
        "task 'returns-list' returned a list, not a mapping; a task must return a mapping: "
        "['not', 'a', 'mapping']"
    ) in listed.stderr


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("cli_tasks:needs_an_argument", "is a function that needs arguments (size)"),
        (
            "cli_tasks:NOT_TASKS",
            "cli_tasks:NOT_TASKS is not a task list: tasks must be an iterable",
        ),
        ("no_such_module_here:TASKS", "cannot import 'no_such_module_here'"),
        ("broken_at_import:TASKS", "importing 'broken_at_import' raised ZeroDivisionError"),
        ("nowhere/tasks.py:TASKS", "cannot import 'nowhere/tasks.py': no such file"),
    ],
)
def test_run_reports_what_it_cannot_load_as_a_usage_error_saying_which_and_why(
    spec: str, why: str, tmp_path: Path
) -> None:
    # A factory that needs arguments used to end in a raw traceback, exit 1.
    (tmp_path / "broken_at_import.py").write_text("TASKS = 1 / 0\n")
    completed = cli("run", spec, env=cli_env(PYTHONPATH=f"{TESTS_DIR}{os.pathsep}{tmp_path}"))
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "Usage: " in completed.stderr
    assert why in completed.stderr
    assert completed.stdout == ""


def test_run_loads_tasks_from_a_path_to_a_python_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file_tasks.py").write_text(
        "def one(ctx, is_active):\n    return {'from_file': 1}\n\n"
        "TASKS = [{'name': 'one', 'fn': one}]\n"
    )
    completed = cli("run", "sub/file_tasks.py:TASKS", "--output", "json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"from_file": 1}


def test_the_console_script_runs_a_function_returning_tasks_with_the_options() -> None:
    completed = cli(
        "run",
        "cli_tasks:make_tasks",
        "--ctx",
        '{"start": 41}',
        "--max-concurrency",
        "1",
        "--max-retries",
        "0",
        "--timeout",
        "20",
        "--output",
        "json",
        script=True,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"start": 41, "sum": 42, "two": True}


def test_run_imports_a_module_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "here_tasks.py").write_text(
        "def one(ctx, is_active):\n    return {'here': 1}\n\nTASKS = [{'name': 'one', 'fn': one}]\n"
    )
    completed = cli("run", "here_tasks:TASKS", "--output", "json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"here": 1}


def test_run_exits_1_when_the_job_fails_and_names_the_task_and_error() -> None:
    completed = cli("run", "cli_tasks:FAILING", "--max-retries", "0", "--output", "json")
    assert completed.returncode == 1
    assert "state: failed" in completed.stderr
    assert "failed task: bad" in completed.stderr
    assert "ValueError: boom\\x1b[2J" in completed.stderr  # escaped, not raw
    assert "\x1b" not in completed.stderr
    assert json.loads(completed.stdout) == {"sum": 1}


def test_run_exits_2_on_invalid_tasks_and_prints_every_error() -> None:
    completed = cli("run", "cli_tasks:INVALID")
    assert completed.returncode == 2
    assert "3 errors in tasks" in completed.stderr
    for fragment in ("'nowhere'", "b -> c -> b", "'timeout'"):
        assert fragment in completed.stderr
    assert completed.stdout == ""


def test_run_exits_3_when_the_job_times_out() -> None:
    started = time.monotonic()
    completed = cli("run", "cli_tasks:SPINNER", "--timeout", "0.3")
    assert completed.returncode == 3, completed.stderr
    assert "state: timed_out" in completed.stderr
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    "args",
    [
        ["run", "cli_tasks:OPAQUE", "--ctx", "not json"],
        ["run", "cli_tasks:OPAQUE", "--ctx", "[1, 2]"],
        ["run", "cli_tasks:OPAQUE", "--max-concurrency", "0"],
        ["run", "cli_tasks:OPAQUE", "--max-retries", "-1"],
        ["run", "no_such_module_here:TASKS"],
        ["run", "cli_tasks:NO_SUCH_ATTR"],
        ["run", "cli_tasks"],
    ],
)
def test_run_rejects_bad_arguments_with_exit_2_and_no_traceback(args: list[str]) -> None:
    completed = cli(*args)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "Error" in completed.stderr


def test_ctrl_c_cancels_the_job_cleanly_and_exits_130(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    command = [sys.executable, "-m", "daguerreo_actors", "run", "cli_tasks:SPINNER", "-o", "json"]
    process = subprocess.Popen(
        [*command, "--ctx", json.dumps({"marker": str(marker)})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + WAIT
        while not marker.exists():
            assert time.monotonic() < deadline, "the task never started"
            assert process.poll() is None, "the command ended before its task started"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT)
    err = stderr.decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "state: cancelled" in err
    assert "interrupted" in err
    assert json.loads(stdout) == {"marker": str(marker)}  # the late result is discarded


def test_run_escapes_control_characters_in_the_printed_ctx_and_keeps_it_json() -> None:
    completed = cli("run", "cli_tasks:EVIL", "--output", "json", "--keys", "text")
    assert completed.returncode == 0, completed.stderr
    assert unsafe_chars(completed.stdout) == []
    assert unsafe_chars(completed.stderr) == []
    ctx = json.loads(completed.stdout)
    assert ctx["text"] == "red\x1b[31m\u202eright\u009b"  # the value round-trips


@pytest.mark.parametrize("output", ["summary", "repr"])
def test_run_escapes_control_characters_in_every_output(output: str) -> None:
    completed = cli("run", "cli_tasks:EVIL", "--output", output)
    assert completed.returncode == 0, completed.stderr
    assert unsafe_chars(completed.stdout) == []
    assert unsafe_chars(completed.stderr) == []
    assert "sneaky\\x1b]0;title\\x07\\u202e" in completed.stdout  # a user __repr__


def test_run_with_json_log_writes_what_tail_and_summary_read(tmp_path: Path) -> None:
    log = tmp_path / "job.jsonl"
    completed = cli("run", "cli_tasks:DIAMOND", "--json-log", str(log), script=True)
    assert completed.returncode == 0, completed.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["event"] for e in entries} == {"job_transition", "task_transition"}
    assert all("timestamp" in e and "level" in e for e in entries)

    tail = cli("tail", str(log), script=True)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == len(entries)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  [0-9a-f]{8}  JOB  idle -> running", lines[0])
    slow_done = next(line for line in lines if "slow  running -> completed" in line)
    seconds = float(re.search(r"#1  (\d+\.\d{3})s$", slow_done).group(1))  # type: ignore[union-attr]
    assert 0.25 <= seconds <= 1.0
    assert re.search(r"JOB  running -> completed  \d+\.\d{3}s$", lines[-1])

    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr
    assert re.search(r"job [0-9a-f]{32}: completed, wall time \d+\.\d{3}s", summary.stdout)
    for name in ("root", "slow", "fast", "sink"):
        assert re.search(
            rf"{name}\s+\S\s+1\s+\S\s+\d+\.\d{{3}}s\s+\S\s+\d+\.\d{{3}}s", summary.stdout
        )
    assert "critical path: root -> slow -> sink" in summary.stdout


# -- the ctx's outputs, in-process ------------------------------------------------------


def cycle() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "ctx key 'k': nan is not JSON"),
        ({1, 2}, "ctx key 'k': a value of type set is not JSON"),
        ({"a": [1, b"x"]}, "ctx key 'k': a value of type bytes is not JSON (at ['a'][1])"),
        ([{"ok": 1}, {2: "two"}], "ctx key 'k': the key 2 is not a string (at [1])"),
        (cycle(), "ctx key 'k': the value contains itself (a cycle) (at [1])"),
        (deep(100_000), "ctx key 'k': the value is nested too deeply for JSON"),
        (10**5000, "ctx key 'k': cannot be written as JSON"),
    ],
    ids=["nan", "set", "bytes", "int-key", "cycle", "deep", "huge-int"],
)
def test_ctx_json_refuses_what_json_cannot_hold_and_says_where(value: Any, message: str) -> None:
    from daguerreo_actors._cli_output import NotJSONError, ctx_json

    with pytest.raises(NotJSONError) as caught:
        ctx_json({"ok": 1, "k": value})
    assert str(caught.value).startswith(message)
    assert caught.value.key == "k"


def test_ctx_json_writes_plain_json_values_as_they_are() -> None:
    from daguerreo_actors._cli_output import ctx_json

    ctx = {"s": "\u202e\x9b", "n": [1, 2.5, True, None], "t": (1, 2), "d": {"a": {"b": []}}}
    text = ctx_json(ctx)
    assert unsafe_chars(text) == []
    assert json.loads(text) == {**ctx, "t": [1, 2]}


@settings(max_examples=examples(100), deadline=None)
@given(
    value=st.recursive(
        st.none() | st.integers() | st.text() | st.binary() | st.floats(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text() | st.integers(), inner),
        max_leaves=30,
    ),
    width=st.integers(min_value=20, max_value=200),
)
def test_a_summary_line_never_exceeds_the_width_nor_prints_a_control_character(
    value: Any, width: int
) -> None:
    from daguerreo_actors._cli_output import size_of, summary_lines

    (line,) = summary_lines({"key\x1b[2J": value}, width)
    # name, type and size come first; the value gets the rest, at least 10.
    head = len("key\\x1b[2J") + 2 + len(type(value).__name__) + 2 + len(size_of(value)) + 2
    assert len(line.plain) <= max(width, head + 10)
    assert unsafe_chars(line.plain) == []


# -- the README's example ----------------------------------------------------------


def readme_run_command() -> str:
    """The ``daguerreo-actors run`` line of the README's "Command line" section."""
    readme = (TESTS_DIR.parent / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    lines = [
        line for line in block.group(1).splitlines() if line.startswith("daguerreo-actors run")
    ]
    assert len(lines) == 1
    return lines[0]


def test_the_readme_run_command_runs_as_written_from_the_repository_root() -> None:
    # It used to fail three ways: "{...}" is not JSON, "smoothie" cannot be
    # imported from the root, and the smoothie needs "liquids" too.
    command = readme_run_command()
    args = shlex.split(command)
    assert args[0] == "daguerreo-actors"
    root = TESTS_DIR.parent
    env = cli_env(PATH=f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH")  # nothing but what the command itself says
    with tempfile.TemporaryDirectory() as scratch:
        # The command may write its log under build/ (ignored by git): keep
        # what was there.
        log = next((Path(a) for a in args if a.endswith(".jsonl")), None)
        kept = root / log if log is not None and (root / log).exists() else None
        saved = Path(scratch) / "kept.jsonl"
        if kept is not None:
            saved.write_bytes(kept.read_bytes())
        try:
            completed = subprocess.run(
                command,
                shell=True,
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )
        finally:
            if log is not None and (root / log).exists():
                (root / log).unlink()
            if kept is not None:
                kept.write_bytes(saved.read_bytes())
    assert completed.returncode == 0, completed.stderr
    assert "state: completed" in completed.stderr
    assert re.search(r"^smoothie\s+str\s+\d+ chars  'sugar \+ ", completed.stdout, re.M)


# -- graph and validate --------------------------------------------------------------


def test_graph_prints_mermaid_by_default_and_dot_on_request() -> None:
    mermaid = cli("graph", "cli_tasks:DIAMOND")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout == (
        "flowchart LR\n"
        '    n0["root"]\n'
        '    n1["slow"]\n'
        '    n2["fast"]\n'
        '    n3["sink"]\n'
        "    n0 --> n1\n"
        "    n0 --> n2\n"
        "    n1 --> n3\n"
        "    n2 --> n3\n"
    )
    dot = cli("graph", "cli_tasks:DIAMOND", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith("digraph dag {\n")
    assert '    n3 [label="sink"];\n' in dot.stdout
    assert "    n1 -> n3;\n" in dot.stdout
    assert dot.stdout.endswith("}\n")


def test_graph_escapes_hostile_names() -> None:
    shown = "evil\\x1b[31m\\u202e\\x0d\\x07name"
    # DOT reads a backslash in a label as an escape: it is doubled there.
    for fmt, label in (("mermaid", shown), ("dot", shown.replace("\\", "\\\\"))):
        completed = cli("graph", "cli_tasks:EVIL", "--format", fmt)
        assert completed.returncode == 0, completed.stderr
        assert unsafe_chars(completed.stdout) == []
        assert f'"{label}"' in completed.stdout


def test_graph_of_invalid_tasks_exits_2() -> None:
    completed = cli("graph", "cli_tasks:INVALID")
    assert completed.returncode == 2
    assert completed.stdout == ""


def test_validate_says_ok_for_valid_tasks() -> None:
    completed = cli("validate", "cli_tasks:DIAMOND")
    assert completed.returncode == 0
    assert "ok: 4 tasks, no errors" in completed.stderr


def test_validate_prints_every_error_and_exits_non_zero() -> None:
    completed = cli("validate", "cli_tasks:INVALID")
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("  - ")]
    assert len(errors) == 3
    assert "3 errors in tasks" in completed.stderr


def test_validate_rejects_what_is_not_a_task_list() -> None:
    completed = cli("validate", "cli_tasks:NOT_TASKS")
    assert completed.returncode == 2
    assert "must be an iterable" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_version_option_works() -> None:
    completed = cli("--version")
    assert completed.returncode == 0
    assert "0.1.0" in completed.stdout


# -- tail -----------------------------------------------------------------------------


def test_tail_shows_one_readable_line_per_transition(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(job_log("blend"))
    completed = cli("tail", str(log))
    assert completed.returncode == 0, completed.stderr
    lines = [line[14:] for line in completed.stdout.splitlines()]  # drop the time
    assert lines == [
        "01234567  JOB  idle -> running",
        "01234567  blend  unscheduled -> ready",
        "01234567  blend  ready -> running  #1",
        "01234567  blend  running -> exception  #1  0.200s  ValueError: no\\x1b[2J",
        "01234567  blend  exception -> ready  #1",
        "01234567  blend  ready -> running  #2",
        "01234567  blend  running -> completed  #2  0.200s",
        "01234567  JOB  running -> completed  0.500s",
    ]
    assert completed.stderr == ""


def test_tail_skips_and_counts_lines_that_are_not_ours(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    good = entry(None, "idle", "running") + entry("a", "unscheduled", "ready")
    garbage = [
        b"not json at all\n",
        b"[1, 2, 3]\n",
        b'{"event": "something_else", "job_id": "x", "ts": 1}\n',
        b'{"event": "task_transition", "job_id": "x", "ts": 1, "task": "a"}\n',
        entry("a", "ready", "nowhere").encode(),
        entry("a", "ready", "running", ts=float("nan")).encode(),
        entry("a", "ready", "running", attempt="\x1b[31m").encode(),
        entry(None, "running", "completed", job_id=42).encode(),  # type: ignore[arg-type]
        b"[" * 100_000 + b"\n",
        b'{"task": "\xff\xfe", "broken utf-8\n',
        b"\n",  # blank: ignored, not counted
    ]
    # A time no clock can show is shown as a number.
    odd_time = entry("a", "ready", "running", ts=1e300, attempt=1)
    log.write_bytes(b"".join(garbage[:6]) + (good + odd_time).encode() + b"".join(garbage[6:]))
    completed = cli("tail", str(log))
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == 3
    assert lines[2] == "1e+300  01234567  a  ready -> running  #1"
    assert "skipped 10 lines (not JSON, or not ours)" in completed.stderr
    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr


def test_tail_filters_by_job_task_and_state(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(job_log("a") + job_log("b", job_id=OTHER_JOB_ID))

    def shown(*options: str) -> list[str]:
        completed = cli("tail", str(log), *options)
        assert completed.returncode == 0, completed.stderr
        return [line[14:] for line in completed.stdout.splitlines()]

    assert len(shown()) == 16
    only_job = shown("--job", "fedc")
    assert len(only_job) == 8
    assert all(line.startswith("fedcba98  ") for line in only_job)
    assert shown("--task", "a", "--state", "running") == [
        "01234567  a  ready -> running  #1",
        "01234567  a  ready -> running  #2",
    ]
    assert shown("--state", "completed", "--job", OTHER_JOB_ID) == [
        "fedcba98  b  running -> completed  #2  0.200s",
        "fedcba98  JOB  running -> completed  0.500s",
    ]
    assert shown("--job", "nope") == []


def test_tail_json_passes_matching_entries_through_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    text = job_log("a") + "garbage\n"
    log.write_text(text)
    completed = cli("tail", str(log), "--json", "--state", "exception")
    assert completed.returncode == 0
    source = [line for line in text.splitlines() if '"new_state": "exception"' in line]
    assert completed.stdout.splitlines() == source
    assert "skipped 1 line " in completed.stderr


def test_tail_reads_stdin_and_survives_undecodable_bytes() -> None:
    data = b"\xff\xfe\n" + job_log("a").encode() + b'{"task": "\xc3\x28"}\n'
    completed = cli("tail", "-", stdin=data, env=cli_env(PYTHONIOENCODING="utf-8:strict"))
    assert completed.returncode == 0, completed.stderr
    assert len(completed.stdout.splitlines()) == 8
    assert "skipped 2 lines" in completed.stderr


def test_tail_and_summary_of_a_missing_file_fail_cleanly(tmp_path: Path) -> None:
    for command in ("tail", "summary"):
        completed = cli(command, str(tmp_path / "missing.jsonl"))
        assert completed.returncode == 2
        assert "cannot read" in completed.stderr
        assert "Traceback" not in completed.stderr


def test_tail_colours_its_output_on_a_terminal_yet_never_lets_a_name_through(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log.jsonl"
    evil = "x\x1b]0;title\x07\u202e\r\x1b[2J"
    log.write_text(job_log(evil))
    plain = cli("tail", str(log))
    assert "\x1b" not in plain.stdout  # a pipe: no colours
    coloured = cli("tail", str(log), env=cli_env(FORCE_COLOR="1", TERM="xterm-256color"))
    assert coloured.returncode == 0, coloured.stderr
    assert SGR.search(coloured.stdout)  # colours
    assert unsafe_chars(SGR.sub("", coloured.stdout)) == []  # and nothing else
    assert "x\\x1b]0;title\\x07\\u202e\\x0d\\x1b[2J" in SGR.sub("", coloured.stdout)


def read_terminal(args: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the command line with its stdout on a pseudo-terminal; its exit code and output."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "daguerreo_actors", *args],
            stdout=slave,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
        os.close(master)
    # The terminal turns each "\n" into "\r\n".
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_tail_on_a_real_terminal_is_coloured_and_still_escapes_names(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(job_log("x\x1b]0;title\x07\u202e"))
    code, out = read_terminal(["tail", str(log)], cli_env(TERM="xterm-256color"))
    assert code == 0
    assert SGR.search(out)
    plain = SGR.sub("", out)
    assert unsafe_chars(plain) == []
    assert "x\\x1b]0;title\\x07\\u202e  unscheduled -> ready" in plain


# -- tail --follow ----------------------------------------------------------------------


class Follower:
    """A `tail --follow` subprocess whose output lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daguerreo_actors", "tail", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="follow-reader", daemon=True)
        self.reader.start()
        self.result: tuple[int, str] | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, count: int) -> list[str]:
        """The next ``count`` lines, each within LINE_WAIT seconds."""
        got = []
        for _ in range(count):
            try:
                got.append(self.lines.get(timeout=LINE_WAIT))
            except queue.Empty:
                pytest.fail(f"no line from tail --follow within {LINE_WAIT}s; got {got}")
        return got

    def nothing_more(self, wait: float = 0.4) -> None:
        with pytest.raises(queue.Empty):
            self.lines.get(timeout=wait)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """End the process (if still running) with ``sig``; its exit code and stderr."""
        if self.result is not None:
            return self.result
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=WAIT)
        self.reader.join(timeout=WAIT)
        assert not self.reader.is_alive()
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.result = (code, err)
        return self.result


@contextmanager
def following(*args: str) -> Iterator[Follower]:
    follower = Follower(*args)
    try:
        yield follower
    finally:
        follower.stop(signal.SIGKILL)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def test_tail_follow_shows_lines_appended_after_it_started(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(entry(None, "idle", "running"))
    with following(str(log)) as follower:
        assert follower.expect(1)[0].endswith("JOB  idle -> running")
        append(log, entry("a", "unscheduled", "ready") + "garbage\n")
        append(log, entry("a", "ready", "running", attempt=1))
        assert [line[14:] for line in follower.expect(2)] == [
            "01234567  a  unscheduled -> ready",
            "01234567  a  ready -> running  #1",
        ]
        # A half-written line waits for its newline.
        last = entry("a", "running", "completed", attempt=1, duration=0.25)
        append(log, last[:20])
        follower.nothing_more()
        append(log, last[20:])
        assert follower.expect(1)[0].endswith("a  running -> completed  #1  0.250s")
        # Ctrl-C ends it cleanly, with the count of skipped lines.
        code, err = follower.stop(signal.SIGINT)
    assert code == 0
    assert "skipped 1 line " in err
    assert "Traceback" not in err


def test_tail_follow_survives_truncation_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(entry(f"before-{n}", "unscheduled", "ready") for n in range(5)))
    with following(str(log)) as follower:
        assert len(follower.expect(5)) == 5
        # Truncated, then rewritten shorter than before: read from the start.
        log.write_text(entry("after-truncate", "unscheduled", "ready"))
        assert "after-truncate" in follower.expect(1)[0]
        # Rotated: the old file is read to its end, then the new one.
        append(log, entry("before-rotate", "unscheduled", "ready"))
        rotated = tmp_path / "log.jsonl.new"
        rotated.write_text(entry("after-rotate", "unscheduled", "ready"))
        os.replace(rotated, log)
        got = follower.expect(2)
        assert "before-rotate" in got[0]
        assert "after-rotate" in got[1]
        # Removed, then created again: waited for.
        log.unlink()
        time.sleep(0.3)
        log.write_text(entry("recreated", "unscheduled", "ready"))
        assert "recreated" in follower.expect(1)[0]
        follower.nothing_more()
        # A plain kill (SIGTERM) ends it like Ctrl-C: cleanly.
        code, err = follower.stop()
    assert code == 0
    assert "Traceback" not in err


# -- summary ----------------------------------------------------------------------------


def test_summary_shows_each_job_with_its_tasks_and_critical_path(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(job_log("a") + "junk\n" + job_log("b", job_id=OTHER_JOB_ID, start=1e9))
    completed = cli("summary", str(log))
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert f"job {JOB_ID}: completed, wall time 0.500s" in out
    assert f"job {OTHER_JOB_ID}: completed, wall time 0.500s" in out
    row = re.search(r"\ba\s+\S\s+(\d+)\s+\S\s+([\d.]+)s\s+\S\s+([\d.]+)s\s+\S\s+(\w+)", out)
    assert row is not None
    assert row.groups() == ("2", "0.100", "0.400", "completed")
    assert "critical path: a" in out
    assert "critical path: b" in out

    only = cli("summary", str(log), "--job", "fedcba")
    assert only.returncode == 0
    assert OTHER_JOB_ID in only.stdout
    assert JOB_ID not in only.stdout

    none = cli("summary", str(log), "--job", "zzz")
    assert none.returncode == 2
    assert "no job found in the log matching 'zzz'" in none.stderr


def test_tail_and_summary_show_what_a_task_returned_that_was_not_a_mapping(
    tmp_path: Path,
) -> None:
    # INVALID_RESULT entries carry their message in "error" (no error_type).
    log = tmp_path / "job.jsonl"
    run = cli("run", "cli_tasks:RETURNS_NONE", "--json-log", str(log))
    assert run.returncode == 1
    message = (
        "task 'returns-none' returned None; a task must return a mapping (return {} for no output)"
    )
    tail = cli("tail", str(log))
    assert tail.returncode == 0, tail.stderr
    line = next(line for line in tail.stdout.splitlines() if "-> invalid_result" in line)
    assert line.endswith(message)
    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr
    assert f"error: returns-none #1: {message}" in summary.stdout.splitlines()


def test_summary_shows_the_last_attempts_error_of_each_task_that_did_not_complete(
    tmp_path: Path,
) -> None:
    log = tmp_path / "job.jsonl"
    run = cli("run", "cli_tasks:FAILING", "--max-retries", "1", "--json-log", str(log))
    assert run.returncode == 1
    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr
    errors = [line for line in summary.stdout.splitlines() if line.startswith("error: ")]
    assert errors == ["error: bad #2: ValueError: boom\\x1b[2J"]


def test_summary_of_a_log_without_jobs_fails_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("nothing\n")
    completed = cli("summary", str(log))
    assert completed.returncode == 2
    assert "no job found in the log" in completed.stderr


# -- hostile names, property-tested (in-process) -----------------------------------------

names = st.one_of(
    st.text(min_size=1, max_size=30),
    st.lists(
        st.one_of(st.sampled_from(EVIL_PIECES), st.text(max_size=4)), min_size=1, max_size=8
    ).map("".join),
).filter(bool)


def render(text: Any, *, terminal: bool) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
        width=200,
        soft_wrap=True,
    )
    console.print(text)
    return buffer.getvalue()


@settings(max_examples=examples(200))
@given(name=names, message=names, job_id=names)
def test_format_entry_never_prints_a_raw_control_character(
    name: str, message: str, job_id: str
) -> None:
    record = json.loads(
        entry(
            name,
            "running",
            "exception",
            job_id=job_id,
            attempt=1,
            duration=0.5,
            error_type=name,
            error=message,
        )
    )
    text = format_entry(record)
    assert unsafe_chars(text.plain) == []
    assert "\n" not in text.plain  # one line per transition
    assert unsafe_chars(render(text, terminal=False)) == []
    assert unsafe_chars(SGR.sub("", render(text, terminal=True))) == []


def invoke(args: Sequence[str], stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@settings(max_examples=examples(40))
@given(name=names, message=names)
def test_the_tail_command_never_prints_a_raw_control_character(name: str, message: str) -> None:
    log = job_log(name, error=message)
    out = invoke(["tail", "-"], stdin=log)
    assert unsafe_chars(out) == []
    assert len(out.splitlines()) == 8


@settings(max_examples=examples(40))
@given(first=names, second=names)
def test_the_summary_command_never_prints_a_raw_control_character(first: str, second: str) -> None:
    start = 1_700_000_000.0
    log = job_log(first, start=start) + "".join(
        [
            entry(second, "unscheduled", "ready", ts=start + 0.5, dependencies=[first]),
            entry(second, "ready", "running", ts=start + 0.5, attempt=1),
            entry(second, "running", "completed", ts=start + 0.6, attempt=1),
        ]
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "log.jsonl"
        path.write_text(log)
        out = invoke(["summary", str(path)])
    assert unsafe_chars(out) == []
    assert "critical path:" in out


def test_summary_shows_each_retry_with_its_reason_and_the_attempts_that_overran(
    tmp_path: Path,
) -> None:
    import threading

    import structlog

    from daguerreo_actors import Task, configure_logging, run
    from daguerreo_actors._logwriter import flush

    log = tmp_path / "job.jsonl"
    release = threading.Event()
    calls: list[int] = []

    def flaky(_ctx: Any, _is_active: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            assert release.wait(10)  # ignores its timeout: a straggler
        return {"ok": True}

    configure_logging(json_file=str(log), level="debug")
    try:
        job = run([Task("flaky", flaky, timeout=0.1, max_retries=1, kill_after=0.1)])
        assert not job.wait_stopped(timeout=0.4)  # past kill_after: overrunning logged
        release.set()
        assert job.get(timeout=WAIT).ok
        assert job.wait_stopped(timeout=WAIT)
        assert flush(WAIT)
    finally:
        release.set()
        structlog.reset_defaults()
    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr
    assert re.search(
        r"retry: flaky #1 -> #2 after \d+\.\d{3}s: timed out \(deadline\)", summary.stdout
    )
    assert re.search(r"overran: flaky #1 returned \d+\.\d{3}s past its deadline", summary.stdout)


def test_run_with_a_journal_then_history_resume_summary_and_tail_read_it(tmp_path: Path) -> None:
    journal = tmp_path / "pipeline.db"
    failed = cli(
        "run", "cli_tasks:RESUMABLE", "--journal", str(journal), "--ctx", '{"a": 1, "b": 2}'
    )
    assert failed.returncode == 1, failed.stderr
    history = cli("history", str(journal))
    assert history.returncode == 0, history.stderr
    assert re.search(r"[0-9a-f]{8}\s+\S\s+failed\s+\S.*1/2", history.stdout)
    resumed = cli(
        "resume",
        "cli_tasks:RESUMABLE",
        "--journal",
        str(journal),
        "--ctx",
        '{"a": 1, "b": 2}',
        env=cli_env(FIXED="1"),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "fixed" in resumed.stdout
    history = cli("history", str(journal))
    assert "resumed by" in history.stdout
    assert re.search(r"completed\s+\S.*2/2\s+\S\s+from [0-9a-f]{8}", history.stdout)
    summary = cli("summary", str(journal))
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.count("job ") == 2
    assert "error: flaky #1: RuntimeError" in summary.stdout
    tail = cli("tail", str(journal), "--task", "first")
    assert tail.returncode == 0, tail.stderr
    assert "first  unscheduled -> completed" in tail.stdout  # restored in the resumed job
    again = cli("resume", "cli_tasks:RESUMABLE", "--journal", str(journal))
    assert again.returncode == 2
    assert "no job to resume" in again.stderr


def test_a_dag_stands_for_its_tasks_on_the_command_line() -> None:
    shown = cli("graph", "examples/etl.py:dag", cwd=TESTS_DIR.parent)
    assert shown.returncode == 0, shown.stderr
    assert '["fetch_orders"]' in shown.stdout
    assert '["fetch-users"]' in shown.stdout
    assert " --> " in shown.stdout
    checked = cli("validate", "examples/etl.py:dag", cwd=TESTS_DIR.parent)
    assert checked.returncode == 0, checked.stderr
    assert "ok: 7 tasks, no errors" in checked.stderr
