"""``daguerreo-actors report FILE -o report.html``: a job's report page.

Reads a JSON-lines log (written at debug level, see ``configure_logging``)
or a journal (``run --journal``), picks the job (``--job``, an id or a
prefix; by default the last one) and writes the page ``_report_html.py``
draws.
"""

from __future__ import annotations

import click
from rich.text import Text

from daguerreo_actors._cli_common import fail, main, out_console
from daguerreo_actors._journal_read import is_journal, journal_lines
from daguerreo_actors._report import JobReport


@main.command("report")
@click.argument("source", metavar="LOG_OR_JOURNAL")
@click.option(
    "-o", "--output", default="report.html", show_default=True, help="The HTML file to write."
)
@click.option("--job", "job_id", help="The job (an id or a prefix of one; default: the last).")
@click.option(
    "--layout",
    type=click.Choice(["auto", "dot", "layered"]),
    default="auto",
    show_default=True,
    help="How the DAG is laid out: dot (graphviz) where installed and small enough, or layered.",
)
def report_command(source: str, output: str, job_id: str | None, layout: str) -> None:
    """Write one self-contained HTML page of a job: DAG, timeline, task table."""
    try:
        lines = journal_lines(source) if is_journal(source) else source
        report = JobReport.from_log(lines, job_id)
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "no such job")
    try:
        written = report.save_html(output, layout=layout)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    except RuntimeError as exc:
        fail(str(exc))
    out_console().print(Text(f"report of job {report.job_id} written to {written}"))
