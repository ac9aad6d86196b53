"""Reading a journal as log entries, so ``tail``, ``summary`` and ``JobReport`` take either.

A journal's transitions become the entries of the log schema
(``_logfile.py``): ``event``, ``job_id``, ``task``, ``old_state``,
``new_state``, ``attempt``, ``ts``, and where known ``reason``,
``error_type`` and, on UNSCHEDULED -> READY (or -> COMPLETED, restored),
``dependencies``. Entries come in time order: an output's COMPLETED row is
committed before the transitions posted around it, so row order alone is
not time order. A journal is recognized by its SQLite header.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator

_HEADER = b"SQLite format 3\x00"


def is_journal(source: object) -> bool:
    """True for a path to an SQLite file."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    try:
        with open(source, "rb") as file:
            return file.read(len(_HEADER)) == _HEADER
    except OSError:
        return False


def journal_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Every transition of every job in the journal, as JSON log lines."""
    uri = f"file:{os.fspath(path)}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        deps = {
            (job, task): json.loads(d)
            for job, task, d in db.execute("SELECT job_id, task, dependencies FROM tasks")
        }
        rows = db.execute(
            "SELECT t.job_id, t.task, t.old_state, t.new_state, t.attempt, t.ts, t.reason, t.error"
            " FROM transitions t JOIN jobs j ON j.job_id = t.job_id"
            " ORDER BY j.started, j.rowid, t.ts, t.rowid"
        ).fetchall()
    finally:
        db.close()
    for job, task, old, new, attempt, ts, reason, error in rows:
        entry: dict[str, object] = {
            "event": "job_transition" if task is None else "task_transition",
            "job_id": job,
            "old_state": old,
            "new_state": new,
            "ts": ts,
        }
        if task is not None:
            entry["task"] = task
            entry["attempt"] = attempt
            if old == "unscheduled" and new in ("ready", "completed"):
                entry["dependencies"] = deps.get((job, task), [])
        if reason is not None:
            entry["reason"] = reason
        if error is not None:
            entry["error_type"] = error
        yield json.dumps(entry)
