"""The ``daguerreo-actors`` command line (also ``python -m daguerreo_actors``).

- ``run MODULE:ATTR``: run a task list with a live progress display;
  exit 0 COMPLETED, 1 FAILED, 2 invalid tasks, 3 TIMED_OUT, 130 Ctrl-C
  (which cancels the job cleanly).
- ``graph MODULE:ATTR``: print the DAG as Mermaid or DOT.
- ``validate MODULE:ATTR``: print every validation error (exit 2 if any).
- ``tail FILE|-``: show the transitions of a JSON-lines log, one line each.
- ``summary FILE``: per job, the final state, a table of tasks, the
  critical path.

Everything printed that comes from user code or from a log (task names,
messages) has its control characters escaped, and goes to the terminal as
plain ``rich.text.Text``, never as markup.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NoReturn

import click
import pykka
import structlog
from rich.console import Console
from rich.table import Table
from rich.text import Text

from daguerreo_actors._console import ProgressListener
from daguerreo_actors._diagram import to_dot, to_mermaid
from daguerreo_actors._errors import InvalidTasksError
from daguerreo_actors._follow import follow_lines
from daguerreo_actors._job import Job
from daguerreo_actors._logfile import EntryFilter, entry_error, is_task_entry, parse_entry
from daguerreo_actors._logging import configure_logging
from daguerreo_actors._report import JobReport
from daguerreo_actors._run import run as run_job
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._task import Task
from daguerreo_actors._text import escape_controls, is_control, safe_str
from daguerreo_actors._validation import validate_tasks

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130

STATE_STYLES = {
    "completed": "green",
    "running": "cyan",
    "ready": "blue",
    "exception": "red",
    "failed": "bold red",
    "invalid_result": "bold magenta",
    "timed_out": "yellow",
    "cancelled": "dim yellow",
    "skipped": "dim",
    "idle": "dim",
    "unscheduled": "dim",
}


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daguerreo-actors")
def main() -> None:
    """Run and inspect DAGs of tasks (daguerreo_actors)."""


# -- loading tasks ------------------------------------------------------------------


def load_tasks(spec: str) -> Any:
    """Import MODULE:ATTR; call ATTR if it is a zero-argument function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:ATTR, got {spec!r}", param_hint="TASKS")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="TASKS"
        ) from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise click.BadParameter(
                f"{module_name!r} has no attribute {attr!r}", param_hint="TASKS"
            ) from exc
    if callable(value) and not isinstance(value, (list, tuple, Task)):
        value = value()
    return value


def _validated(spec: str) -> tuple[Task, ...] | None:
    tasks = load_tasks(spec)
    try:
        return validate_tasks(tasks)
    except InvalidTasksError as error:
        _print_errors(error)
        return None
    except TypeError as error:
        _err().print(Text(escape_controls(str(error)), style="red"))
        return None


def _print_errors(error: InvalidTasksError) -> None:
    console = _err()
    count = len(error.errors)
    console.print(Text(f"{count} error{'' if count == 1 else 's'} in tasks:", style="bold red"))
    for item in error.errors:
        console.print(Text(f"  - {escape_controls(str(item))}"))


# -- run ------------------------------------------------------------------------------


@main.command("run")
@click.argument("tasks_spec", metavar="MODULE:ATTR")
@click.option("--ctx", "ctx_json", help="The initial ctx, a JSON object.")
@click.option("--timeout", type=float, help="The whole job's timeout, in seconds.")
@click.option("--max-concurrency", type=click.IntRange(min=1), help="Most tasks running at once.")
@click.option("--max-retries", type=click.IntRange(min=0), help="Retries per task (default 5).")
@click.option(
    "--json-log",
    type=click.Path(dir_okay=False, writable=True),
    help="Append every transition to this file as JSON lines (for tail and summary).",
)
def run_command(
    tasks_spec: str,
    ctx_json: str | None,
    timeout: float | None,
    max_concurrency: int | None,
    max_retries: int | None,
    json_log: str | None,
) -> None:
    """Run the task list MODULE:ATTR with a live progress display."""
    ctx: dict[str, Any] = {}
    if ctx_json is not None:
        try:
            ctx = json.loads(ctx_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--ctx") from exc
        if not isinstance(ctx, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--ctx")
    tasks = _validated(tasks_spec)
    if tasks is None:
        sys.exit(EXIT_INVALID)
    if json_log is not None:
        configure_logging(json_file=json_log, level="debug")
    else:
        # The display and the final summary say what matters; keep the
        # engine's own log entries off the terminal.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    options: dict[str, Any] = {}
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    if max_retries is not None:
        options["max_retries"] = max_retries
    err = _err()
    progress = ProgressListener(len(tasks), console=err, description=tasks_spec)
    try:
        job = run_job(tasks, ctx=ctx, timeout=timeout, listeners=[progress], **options)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(escape_controls(str(exc))) from exc
    interrupted = False
    try:
        result = _wait(job)
    except KeyboardInterrupt:
        interrupted = True
        # A second Ctrl-C while we cancel must not leave a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        job.cancel()
        result = job.get(timeout=10)
    job.wait_for_listeners(timeout=5)
    _print_result(result)
    if interrupted:
        err.print(Text("interrupted: the job was cancelled", style="yellow"))
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(
        {
            JobState.COMPLETED: EXIT_OK,
            JobState.FAILED: EXIT_FAILED,
            JobState.TIMED_OUT: EXIT_TIMED_OUT,
        }.get(result.state, EXIT_FAILED)
    )


def _wait(job: Job) -> Any:
    # Short waits keep the main thread responsive to Ctrl-C.
    while True:
        try:
            return job.get(timeout=0.1)
        except pykka.Timeout:
            continue


def _print_result(result: Any) -> None:
    out, err = _out(), _err()
    style = STATE_STYLES.get(result.state.value, "")
    err.print(Text.assemble("state: ", (result.state.value, style)))
    if result.state is JobState.FAILED:
        detail = f"failed task: {result.failed_task} ({result.failure_reason})"
        if result.exception is not None:
            detail += f": {type(result.exception).__name__}: {safe_str(result.exception)}"
        err.print(Text(escape_controls(detail), style="red"))
    text = json.dumps(_jsonable(result.ctx), indent=2, ensure_ascii=False)
    out.print(Text(_escape_json_controls(text)))


def _escape_json_controls(text: str) -> str:
    """JSON text with its control and format characters as ``\\uNNNN`` escapes.

    ``json.dumps(ensure_ascii=False)`` escapes only C0 controls; DEL, C1
    controls (CSI), bidi overrides, separators and lone surrogates from user
    values would reach the terminal raw. They can only sit inside JSON
    strings, where a ``\\u`` escape keeps the text valid JSON; the layout's
    own newlines are kept.
    """
    out: list[str] = []
    for char in text:
        if char != "\n" and is_control(char):
            code = ord(char)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _jsonable(ctx: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in ctx.items():
        name = key if isinstance(key, str) else repr(key)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[name] = value
    return out


# -- graph and validate -------------------------------------------------------------


@main.command("graph")
@click.argument("tasks_spec", metavar="MODULE:ATTR")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid")
def graph_command(tasks_spec: str, fmt: str) -> None:
    """Print the DAG of MODULE:ATTR as Mermaid or Graphviz DOT."""
    tasks = _validated(tasks_spec)
    if tasks is None:
        sys.exit(EXIT_INVALID)
    click.echo(to_mermaid(tasks) if fmt == "mermaid" else to_dot(tasks), nl=False)


@main.command("validate")
@click.argument("tasks_spec", metavar="MODULE:ATTR")
def validate_command(tasks_spec: str) -> None:
    """Print every validation error of MODULE:ATTR; exit 2 if there is any."""
    tasks = _validated(tasks_spec)
    if tasks is None:
        sys.exit(EXIT_INVALID)
    _err().print(Text(f"ok: {len(tasks)} tasks, no errors", style="green"))


# -- tail ---------------------------------------------------------------------------


@main.command("tail")
@click.argument("source", metavar="FILE|-")
@click.option("-f", "--follow", is_flag=True, help="Keep reading as the file grows.")
@click.option("--job", "job_id", help="Only this job (an id or a prefix of one).")
@click.option("--task", "task_name", help="Only this task.")
@click.option(
    "--state",
    type=click.Choice(sorted({s.value for s in TaskState} | {s.value for s in JobState})),
    help="Only transitions to this state.",
)
@click.option("--json", "as_json", is_flag=True, help="Pass matching entries through unchanged.")
def tail_command(
    source: str,
    follow: bool,
    job_id: str | None,
    task_name: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """Show the transitions in a JSON-lines log (see configure_logging)."""
    out = _out()
    skipped = 0
    wanted = EntryFilter(job=job_id, task=task_name, state=state)
    # Stopped by a signal (kill, a supervisor): end like Ctrl-C, counts printed.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for line in _lines(source, follow):
            if not line.strip():
                continue
            entry = parse_entry(line)
            if entry is None:
                skipped += 1
                continue
            if not wanted.matches(entry):
                continue
            if as_json:
                click.echo(line.rstrip("\n"))
            else:
                out.print(format_entry(entry))
    except KeyboardInterrupt:
        pass
    finally:
        if skipped:
            _err().print(
                Text(f"skipped {skipped} line{'s' if skipped != 1 else ''} (not JSON, or not ours)")
            )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _lines(source: str, follow: bool) -> Iterator[str]:
    if source == "-":
        yield from _stdin_lines()
    elif follow:
        yield from follow_lines(source)
    else:
        try:
            with open(source, encoding="utf-8", errors="replace") as handle:
                yield from handle
        except OSError as exc:
            _fail(f"cannot read {source}: {exc.strerror}")


def _stdin_lines() -> Iterable[str]:
    # Like a file (errors="replace"): an undecodable byte must not end the tail.
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace")


def format_entry(entry: dict[str, Any]) -> Text:
    """One readable line: time, short job id, task or JOB, old -> new, attempt, duration, error."""
    try:
        when = datetime.fromtimestamp(float(entry["ts"])).strftime("%H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):  # a time no clock can show
        when = f"{float(entry['ts']):.6g}"
    job = str(entry["job_id"])[:8]
    is_task = is_task_entry(entry)
    who = escape_controls(str(entry["task"])) if is_task else "JOB"
    new = str(entry["new_state"])
    text = Text.assemble(
        (when, "dim"),
        "  ",
        (escape_controls(job), "magenta"),
        "  ",
        (who, "bold" if is_task else "bold underline"),
        "  ",
        (str(entry["old_state"]), STATE_STYLES.get(str(entry["old_state"]), "")),
        " -> ",
        (new, STATE_STYLES.get(new, "")),
    )
    if is_task and entry.get("attempt"):
        text.append(f"  #{escape_controls(str(entry['attempt']))}", style="dim")
    duration = entry.get("duration")
    if isinstance(duration, (int, float)):
        text.append(f"  {duration:.3f}s", style="dim")
    error = entry_error(entry)
    if error is not None:
        text.append(f"  {escape_controls(error)}", style="red")
    return text


# -- summary --------------------------------------------------------------------------


@main.command("summary")
@click.argument("source", metavar="FILE")
@click.option("--job", "job_id", help="Only this job (an id or a prefix of one).")
def summary_command(source: str, job_id: str | None) -> None:
    """Per job: final state, wall time, a table of tasks, the critical path."""
    try:
        reports = JobReport.all_from_log(source)
    except OSError as exc:
        _fail(f"cannot read {source}: {exc.strerror}")
    if job_id is not None:
        wanted = EntryFilter(job=job_id)
        reports = [r for r in reports if wanted.matches_job(r.job_id)]
    if not reports:
        _fail("no job found in the log" + ("" if job_id is None else f" matching {job_id!r}"))
    out = _out()
    for report in reports:
        style = STATE_STYLES.get(report.state.value, "")
        out.print(
            Text.assemble(
                ("job ", "bold"),
                (escape_controls(report.job_id or "?"), "magenta"),
                ": ",
                (report.state.value, style),
                f", wall time {report.wall_time:.3f}s",
            )
        )
        table = Table(show_edge=False)
        for column in ("task", "attempts", "queue wait", "run time", "state"):
            table.add_column(column, justify="left" if column in ("task", "state") else "right")
        for task in report.tasks.values():
            table.add_row(
                Text(escape_controls(task.name)),
                str(len(task.attempts)),
                f"{task.queue_wait:.3f}s",
                f"{task.run_time:.3f}s",
                Text(task.state.value, style=STATE_STYLES.get(task.state.value, "")),
            )
        out.print(table)
        path = report.critical_path
        out.print(
            Text.assemble(
                ("critical path: ", "bold"),
                " -> ".join(escape_controls(p) for p in path) if path else "(none)",
            )
        )
        out.print()


def _fail(message: str) -> NoReturn:
    _err().print(Text(escape_controls(message), style="red"))
    sys.exit(EXIT_INVALID)


if __name__ == "__main__":  # pragma: no cover
    main()
