"""The ``daguerreo-actors`` command line (also ``python -m daguerreo_actors``).

- ``run MODULE:ATTR``: run a task list with a live progress display;
  exit 0 COMPLETED, 1 FAILED, 2 invalid tasks, 3 TIMED_OUT, 130 Ctrl-C
  (which cancels the job cleanly).
- ``graph MODULE:ATTR``: print the DAG as Mermaid or DOT.
- ``validate MODULE:ATTR``: print every validation error (exit 2 if any).
- ``tail FILE|-`` and ``summary FILE``: read a JSON-lines log (``_cli_logs.py``).

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

from daguerreo_actors import _cli_logs
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
from daguerreo_actors._console import ProgressListener
from daguerreo_actors._diagram import to_dot, to_mermaid
from daguerreo_actors._job import Job
from daguerreo_actors._logging import configure_logging
from daguerreo_actors._run import run as run_job
from daguerreo_actors._states import JobState
from daguerreo_actors._text import escape_controls, is_control, safe_str

format_entry = _cli_logs.format_entry

__all__ = ["format_entry", "load_tasks", "main"]

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
    out, err = out_console(), err_console()
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
