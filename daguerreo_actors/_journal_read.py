"""Reading a journal as log entries, so ``tail``, ``summary`` and ``JobReport`` take either.

A journal's transitions become the entries of the log schema
(``_logfile.py``): ``event``, ``job_id``, ``task``, ``old_state``,
``new_state``, ``attempt``, ``ts``, and where known ``reason``,
``error_type`` and, on UNSCHEDULED -> READY (or -> COMPLETED, restored),
``dependencies``. Entries come in time order: a completion is its output's
row, committed apart from the batches of the other transitions, so row
order alone is not time order. A journal is recognized by its SQLite header.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

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


def job_transitions(
    query: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]], job_id: str
) -> list[tuple[Any, ...]]:
    """A job's transitions in time order: (task, old, new, attempt, ts, reason, error).

    The batches of the ``transitions`` table, plus each output row's RUNNING
    -> COMPLETED (a restored or cached output has its own entry).
    """
    found: list[tuple[Any, ...]] = []
    for (entries,) in query(
        "SELECT entries FROM transitions WHERE job_id = ? ORDER BY rowid", (job_id,)
    ):
        found.extend(tuple(entry) for entry in json.loads(entries))
    for task, attempt, ts in query(
        "SELECT task, attempt, ts FROM outputs WHERE job_id = ? AND attempt > 0 ORDER BY seq",
        (job_id,),
    ):
        found.append((task, "running", "completed", attempt, ts, None, None))
    # Stable: entries of one moment keep the order they were made in.
    found.sort(key=lambda entry: entry[4] if entry[4] is not None else 0.0)
    return found


def journal_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Every transition of every job in the journal, as JSON log lines."""
    uri = f"file:{os.fspath(path)}?mode=ro"
    db = sqlite3.connect(uri, uri=True)

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(db.execute(sql, params))

    try:
        deps = {
            (job, task): json.loads(d)
            for job, task, d in query("SELECT job_id, task, dependencies FROM tasks")
        }
        jobs = []
        names: dict[str, str] = {}
        for job, options in query("SELECT job_id, options FROM jobs ORDER BY started, rowid"):
            jobs.append(job)
            name = json.loads(options or "{}").get("name")
            if isinstance(name, str):
                names[job] = name
        rows = [(job, *entry) for job in jobs for entry in job_transitions(query, job)]
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
        if task is None and old == "idle" and job in names:
            entry["job_name"] = names[job]
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
