"""``daguerreo-actors tail`` and ``summary``: reading a job's JSON-lines log.

Either command also reads a journal (``run --journal``) in place of a log.

- ``tail FILE|-``: the transitions, one readable line each, filtered by job
  (an id or a prefix of one), task and new state; ``--follow`` keeps reading
  as the file grows; ``--json`` passes matching entries through unchanged.
- ``summary FILE``: per job, the final state, a table of tasks, the last
  attempt's error of each task that did not complete, the critical path.
"""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from daguerreo_actors._cli_common import STATE_STYLES, err_console, fail, main, out_console
from daguerreo_actors._follow import follow_lines
from daguerreo_actors._journal_read import is_journal, journal_lines
from daguerreo_actors._logfile import EntryFilter, entry_error, is_task_entry, parse_entry
from daguerreo_actors._report import AttemptReport, JobReport
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import escape_controls

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
    out = out_console()
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
            err_console().print(
                Text(f"skipped {skipped} line{'s' if skipped != 1 else ''} (not JSON, or not ours)")
            )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _lines(source: str, follow: bool) -> Iterator[str]:
    if source == "-":
        yield from _stdin_lines()
    elif is_journal(source):
        if follow:
            fail("--follow reads a JSON-lines log; a journal is read whole")
        yield from journal_lines(source)
    elif follow:
        yield from follow_lines(source)
    else:
        try:
            with open(source, encoding="utf-8", errors="replace") as handle:
                yield from handle
        except OSError as exc:
            fail(f"cannot read {source}: {exc.strerror}")


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
    """Per job: final state, wall time, a table of tasks, errors, the critical path."""
    try:
        reports = JobReport.all_from_log(journal_lines(source) if is_journal(source) else source)
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    if job_id is not None:
        wanted = EntryFilter(job=job_id)
        reports = [r for r in reports if wanted.matches_job(r.job_id)]
    if not reports:
        fail("no job found in the log" + ("" if job_id is None else f" matching {job_id!r}"))
    out = out_console()
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
        for line in _error_lines(report):
            out.print(line)
        for line in _retry_lines(report):
            out.print(line)
        for line in _straggler_lines(report):
            out.print(line)
        path = report.critical_path
        out.print(
            Text.assemble(
                ("critical path: ", "bold"),
                " -> ".join(escape_controls(p) for p in path) if path else "(none)",
            )
        )
        out.print()


def _error_lines(report: JobReport) -> Iterator[Text]:
    """``error: task #N: message`` per task that did not complete, from its last attempt."""
    for task in report.tasks.values():
        if task.state is TaskState.COMPLETED or not task.attempts:
            continue
        last = task.attempts[-1]
        if last.error is not None:
            message = last.error
        elif last.outcome is TaskState.TIMED_OUT:
            message = _timed_out(last)
        else:
            continue
        yield Text.assemble(
            ("error: ", "bold red"),
            (escape_controls(task.name), "bold"),
            f" #{last.attempt}: ",
            (escape_controls(message), "red"),
        )


def _timed_out(attempt: AttemptReport) -> str:
    return "timed out" if attempt.reason is None else f"timed out ({attempt.reason})"


def _retry_lines(report: JobReport) -> Iterator[Text]:
    """``retry: task #N -> #N+1 after Xs: why`` for every retry (the gap and its cause)."""
    for task in report.tasks.values():
        for before, after in zip(task.attempts, task.attempts[1:], strict=False):
            if before.outcome is TaskState.TIMED_OUT:
                why = _timed_out(before)
            else:
                why = before.error or (before.outcome.value if before.outcome else "?")
            gap = ""
            if before.ended_at is not None and after.started_at is not None:
                gap = f" after {max(0.0, after.started_at - before.ended_at):.3f}s"
            yield Text.assemble(
                ("retry: ", "bold yellow"),
                (escape_controls(task.name), "bold"),
                f" #{before.attempt} -> #{after.attempt}{gap}: ",
                escape_controls(why),
            )


def _straggler_lines(report: JobReport) -> Iterator[Text]:
    """``overrunning:``/``overran:`` per attempt whose code ran past its deadline."""
    for name, attempt in report.stragglers:
        label = "overrunning: " if attempt.overrunning else "overran: "
        what = "still running" if attempt.overrunning else "returned"
        yield Text.assemble(
            (label, "bold magenta"),
            (escape_controls(name), "bold"),
            f" #{attempt.attempt} {what} {attempt.overran_by or 0.0:.3f}s past its deadline",
        )
