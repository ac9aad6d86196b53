"""The ``daguerreo-actors`` command line (also ``python -m daguerreo_actors``).

- ``run MODULE:ATTR``: run a task list with a live progress display, then
  print the final state and the ctx (``_cli_output.py``: a line per key,
  JSON or reprs); exit 0 COMPLETED, 1 FAILED, 2 invalid tasks or a usage
  error, 3 TIMED_OUT, 130 Ctrl-C (which cancels the job cleanly).
- ``graph MODULE:ATTR``: print the DAG as Mermaid or DOT.
- ``validate MODULE:ATTR``: print every validation error (exit 2 if any).
- ``resume MODULE:ATTR --journal FILE``: continue a job recorded in a journal.
- ``tail FILE|-`` and ``summary FILE``: read a JSON-lines log or a journal
  (``_cli_logs.py``); ``history FILE``: a journal's jobs (``_cli_journal.py``);
  ``report FILE -o report.html``: a job's report page (``_cli_report.py``).

Shared pieces (the group, consoles, exit codes, loading) are in
``_cli_common.py``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import click
import pykka
import structlog
from rich.text import Text

from daguerreo_actors import _cli_journal, _cli_logs, _cli_report
from daguerreo_actors._cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TIMED_OUT,
    STATE_STYLES,
    err_console,
    load_tasks,
    main,
    out_console,
    validated,
)
from daguerreo_actors._cli_output import (
    OUTPUTS,
    NotJSONError,
    ctx_json,
    repr_lines,
    summary_lines,
)
from daguerreo_actors._configure_logging import configure_logging
from daguerreo_actors._console import ProgressListener
from daguerreo_actors._diagram import to_dot, to_mermaid
from daguerreo_actors._errors import JournalError, invalid_result_message
from daguerreo_actors._job import Job
from daguerreo_actors._result import JobResult
from daguerreo_actors._run import run as run_job
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import escape_controls, short_message

format_entry = _cli_logs.format_entry

__all__ = ["format_entry", "load_tasks", "main"]
_ = (_cli_journal, _cli_report)  # their commands register on import

# -- run ------------------------------------------------------------------------------


def _job_options(command: Any) -> Any:
    """The options ``run`` and ``resume`` share."""
    options = [
        click.argument("tasks_spec", metavar="MODULE:ATTR"),
        click.option("--ctx", "ctx_json", help="The initial ctx, a JSON object."),
        click.option("--timeout", type=float, help="The whole job's timeout, in seconds."),
        click.option(
            "--max-concurrency", type=click.IntRange(min=1), help="Most tasks running at once."
        ),
        click.option(
            "--max-retries", type=click.IntRange(min=0), help="Retries per task (default 5)."
        ),
        click.option(
            "--json-log",
            type=click.Path(dir_okay=False, writable=True),
            help="Append every transition to this file as JSON lines (for tail and summary).",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(OUTPUTS),
            default="summary",
            show_default=True,
            help="The final ctx: one line per key (summary), the whole ctx as JSON "
            "(refused if a value is not JSON), or every value's repr.",
        ),
        click.option(
            "--keys",
            "keys_option",
            multiple=True,
            metavar="A,B",
            help="Only these ctx keys (comma-separated; may be repeated).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command("run")
@_job_options
@click.option(
    "--journal",
    type=click.Path(dir_okay=False),
    help="Record the job in this SQLite journal (for resume and history).",
)
def run_command(journal: str | None, **options: Any) -> None:
    """Run the task list MODULE:ATTR with a live progress display.

    MODULE is a module name or a path to a .py file; ATTR a task list or a
    function without arguments returning one. Prints the final state and
    the ctx; exits 0 completed, 1 failed, 2 invalid tasks or usage, 3 timed
    out, 130 on Ctrl-C (which cancels the job).
    """
    _execute(journal=journal, resuming=False, job_id=None, **options)


@main.command("resume")
@_job_options
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="The SQLite journal the job was recorded in.",
)
@click.option("--job", "job_id", help="The job to resume (an id or a prefix; default: the latest).")
def resume_command(journal: str, job_id: str | None, **options: Any) -> None:
    """Continue the latest job of MODULE:ATTR in JOURNAL that did not complete.

    Tasks recorded as completed (and unchanged since) are not run again.
    Exit codes as for run.
    """
    _execute(journal=journal, resuming=True, job_id=job_id, **options)


def _execute(
    tasks_spec: str,
    ctx_json: str | None,
    timeout: float | None,
    max_concurrency: int | None,
    max_retries: int | None,
    json_log: str | None,
    output: str,
    keys_option: tuple[str, ...],
    journal: str | None,
    resuming: bool,
    job_id: str | None,
) -> None:
    ctx: dict[str, Any] = {}
    if ctx_json is not None:
        try:
            ctx = json.loads(ctx_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--ctx") from exc
        if not isinstance(ctx, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--ctx")
    keys = [key for option in keys_option for key in option.split(",") if key] or None
    tasks = validated(tasks_spec)
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
    err = err_console()
    progress = ProgressListener(len(tasks), console=err, description=tasks_spec)
    if journal is not None:
        options["journal"] = journal
    try:
        if resuming:
            from daguerreo_actors._resume import resume

            job = resume(
                tasks, job_id=job_id, ctx=ctx, timeout=timeout, listeners=[progress], **options
            )
        else:
            job = run_job(tasks, ctx=ctx, timeout=timeout, listeners=[progress], **options)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(escape_controls(str(exc))) from exc
    except JournalError as exc:
        err.print(Text(escape_controls(str(exc)), style="red"))
        sys.exit(EXIT_INVALID)
    progress.follow(job)
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
    _print_state(result)
    _print_ctx(result.ctx, output, keys)
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


def _print_state(result: JobResult) -> None:
    err = err_console()
    style = STATE_STYLES.get(result.state.value, "")
    err.print(Text.assemble("state: ", (result.state.value, style)))
    if result.state is JobState.FAILED:
        err.print(Text(escape_controls(failure_detail(result)), style="red"))


def failure_detail(result: JobResult) -> str:
    """What failed the job, and how, for a person."""
    reason = result.failure_reason.value if result.failure_reason is not None else "failed"
    detail = f"failed task: {result.failed_task} ({reason})"
    if result.failure_reason is TaskState.INVALID_RESULT and result.failed_task is not None:
        detail += ": " + invalid_result_message(
            result.failed_task, result.invalid_result, with_value=True
        )
    elif result.exception is not None:
        detail += f": {type(result.exception).__name__}: {short_message(result.exception)}"
    return detail


def _print_ctx(ctx: dict[Any, Any], output: str, keys: list[str] | None) -> None:
    if keys is not None:
        missing = [key for key in keys if key not in ctx]
        if missing:
            err_console().print(
                Text("not in the ctx: " + ", ".join(escape_controls(repr(k)) for k in missing))
            )
        ctx = {key: ctx[key] for key in keys if key in ctx}
    if output == "json":
        try:
            text = ctx_json(ctx)
        except NotJSONError as exc:
            raise click.UsageError(
                f"--output json: {escape_controls(str(exc))}; "
                "use --output repr, or --keys to leave it out"
            ) from None
        _write(text + "\n")
    elif output == "repr":
        _write("".join(line.plain + "\n" for line in repr_lines(ctx)))
    else:
        out = out_console()
        for line in summary_lines(ctx, out.width):
            out.print(line)


def _write(text: str) -> None:
    # Straight to stdout: the text is escaped already, and rich would
    # measure and wrap every character of a large ctx.
    sys.stdout.write(text)
    sys.stdout.flush()


# -- graph and validate -------------------------------------------------------------


@main.command("graph")
@click.argument("tasks_spec", metavar="MODULE:ATTR")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid")
def graph_command(tasks_spec: str, fmt: str) -> None:
    """Print the DAG of MODULE:ATTR as Mermaid or Graphviz DOT."""
    tasks = validated(tasks_spec)
    if tasks is None:
        sys.exit(EXIT_INVALID)
    click.echo(to_mermaid(tasks) if fmt == "mermaid" else to_dot(tasks), nl=False)


@main.command("validate")
@click.argument("tasks_spec", metavar="MODULE:ATTR")
def validate_command(tasks_spec: str) -> None:
    """Print every validation error of MODULE:ATTR; exit 2 if there is any."""
    tasks = validated(tasks_spec)
    if tasks is None:
        sys.exit(EXIT_INVALID)
    err_console().print(Text(f"ok: {len(tasks)} tasks, no errors", style="green"))


if __name__ == "__main__":  # pragma: no cover
    main()
