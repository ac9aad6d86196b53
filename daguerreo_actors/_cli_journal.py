"""``daguerreo-actors history JOURNAL``: the jobs a journal recorded.

One line per job, oldest first: its id, state, start (local time, month-day), wall
time, tasks completed of the total, and the job it resumed or was resumed
by. ``tail`` and ``summary`` read a journal too (``_journal_read.py``).
"""

from __future__ import annotations

from datetime import datetime

import click
from rich.table import Table
from rich.text import Text

from daguerreo_actors._cli_common import STATE_STYLES, fail, main, out_console
from daguerreo_actors._errors import JournalError
from daguerreo_actors._journal_read import is_journal
from daguerreo_actors._text import escape_controls


@main.command("history")
@click.argument("source", metavar="JOURNAL", type=click.Path(dir_okay=False, exists=True))
def history_command(source: str) -> None:
    """List the jobs recorded in JOURNAL (made with run --journal)."""
    from daguerreo_actors._journal import Journal

    if not is_journal(source):
        fail(f"{source} is not a journal (an SQLite file made with --journal)")
    try:
        with Journal(source) as journal:
            jobs = journal.jobs()
    except JournalError as exc:
        fail(str(exc))
    out = out_console()
    if not jobs:
        out.print("no job recorded")
        return
    table = Table(show_edge=False)
    for column in ("job", "state", "started", "wall time", "tasks done", "lineage"):
        table.add_column(
            column, justify="right" if column in ("wall time", "tasks done") else "left"
        )
    for job in jobs:
        lineage = ""
        if job.resumed_from:
            lineage = f"from {job.resumed_from[:8]}"
        if job.resumed_by:
            lineage += (", " if lineage else "") + f"resumed by {job.resumed_by[:8]}"
        wall = job.wall_time
        table.add_row(
            Text(escape_controls(job.job_id[:8])),
            Text(job.state, style=STATE_STYLES.get(job.state, "")),
            datetime.fromtimestamp(job.started).strftime("%m-%d %H:%M:%S"),
            "-" if wall is None else f"{wall:.3f}s",
            f"{job.completed}/{job.tasks}",
            lineage,
        )
    out.print(table)
