"""``resume()``: continue a job recorded in a journal, merging every output exactly once.

``resume(tasks, journal=..., job_id=None)`` picks the job (the one named,
or the latest that neither completed nor was resumed already) and starts a
new job with a new id whose ``resumed_from`` is the old one. In one
transaction with the new job's row (``Journal.open_job``) it takes the old
job's lease (refused while another live process holds it), marks the old
job resumed, and copies the outputs it restores, so a crash of the new job
can be resumed in turn. The new job merges those outputs first, in their
recorded order, each as UNSCHEDULED -> COMPLETED with ``restored=True``
(``Scheduler.start``); everything else runs as usual.

A task is restored only if its fingerprint (``_fingerprint.py``: code,
dependencies, ``version``) is the one recorded; one that changed runs
again, and so does everything downstream of it (logged as ``task_rerun``
with the reason).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from daguerreo_actors._errors import JournalError
from daguerreo_actors._fingerprint import task_fingerprint, tasks_fingerprint
from daguerreo_actors._graph import topological_order
from daguerreo_actors._journal import JobJournal, Journal
from daguerreo_actors._logging import log_outside
from daguerreo_actors._resume_maps import completed_maps, restore_maps
from daguerreo_actors._serializer import PICKLE, Serializer

if TYPE_CHECKING:
    from daguerreo_actors._graph import Graph
    from daguerreo_actors._job import Job
    from daguerreo_actors._task import Task


@dataclasses.dataclass(frozen=True, slots=True)
class ResumePlan:
    """What ``resume`` hands ``run`` as its ``journal``: which journal, which job."""

    journal: Journal
    owned: bool
    job_id: str


def resume(
    tasks: Any,
    journal: str | os.PathLike[str] | Journal = "pipeline.db",
    job_id: str | None = None,
    **run_options: Any,
) -> Job:
    """Continue the latest job in ``journal`` that did not complete (or ``job_id``'s).

    Tasks recorded COMPLETED there, and unchanged since, are not run again:
    their outputs are merged first, in their recorded order. Takes every
    option of :func:`run`. Raises :class:`JournalError` if there is no such
    job or another live process drives it.
    """
    from daguerreo_actors._run import run

    if "journal" in run_options:
        raise TypeError("resume() got journal twice")
    opened, owned = open_journal(journal)
    try:
        found = opened.find_job(job_id)
    except BaseException:
        if owned:
            opened.close()
        raise
    plan = ResumePlan(opened, owned, found.job_id)
    try:
        return run(tasks, journal=plan, **run_options)  # type: ignore[arg-type]  # internal
    except BaseException:
        if owned and not opened._store._closed:
            opened.close()  # run() refused before the job began
        raise


def open_journal(journal: object) -> tuple[Journal, bool]:
    """A ``journal=`` argument as a Journal, and whether the job owns (closes) it."""
    if isinstance(journal, Journal):
        return journal, False
    if isinstance(journal, (str, os.PathLike)):
        return Journal(journal), True
    raise TypeError(f"journal must be None, a path or a Journal, got {type(journal).__name__}")


def check_serializer(serializer: object) -> Serializer:
    if serializer is None:
        return PICKLE
    if not (
        callable(getattr(serializer, "dumps", None))
        and callable(getattr(serializer, "loads", None))
    ):
        raise TypeError(
            "serializer must be None or an object with dumps and loads (pickle, json, ...), "
            f"got {type(serializer).__name__}"
        )
    return serializer  # type: ignore[return-value]


def start_journal(
    journal: object,
    serializer: Serializer,
    *,
    job_id: str,
    tasks: Sequence[Task],
    graph: Graph,
    started: float,
    options: Mapping[str, Any],
) -> tuple[JobJournal, tuple[tuple[int, Mapping[Any, Any]], ...]]:
    """Record a new job; for a resume, also what it restores (by node, in order)."""
    plan = journal if isinstance(journal, ResumePlan) else None
    if plan is not None:
        opened, owned = plan.journal, plan.owned
    else:
        opened, owned = open_journal(journal)
    try:
        names = graph.names
        fingerprints = [task_fingerprint(t) for t in tasks]
        restored: list[tuple[int, Mapping[Any, Any]]] = []
        blobs: list[tuple[str, Any, Any]] = []
        children: dict[str, Mapping[Any, Any]] = {}
        rows: list[tuple[str, str]] = []
        if plan is not None:
            restored, blobs, children, rows = _restorable(
                opened, plan.job_id, graph, fingerprints, serializer, tasks
            )
        side = opened.open_job(
            job_id,
            started=started,
            names=names,
            fingerprints=fingerprints,
            dependencies=[sorted(t.dependencies) for t in tasks],
            fingerprint=tasks_fingerprint(list(zip(names, fingerprints, strict=True))),
            options=options,
            serializer=serializer,
            owned=owned,
            resumed=None if plan is None else plan.job_id,
            restored=blobs,
            restored_rows=rows,
        )
    except BaseException:
        if owned:
            opened.close()
        raise
    side.restored_children = children
    return side, tuple(restored)


def _restorable(
    journal: Journal,
    old_job: str,
    graph: Graph,
    fingerprints: Sequence[str],
    serializer: Serializer,
    tasks: Sequence[Task],
) -> tuple[
    list[tuple[int, Mapping[Any, Any]]],
    list[tuple[str, Any, Any]],
    dict[str, Mapping[Any, Any]],
    list[tuple[str, str]],
]:
    names = graph.names
    position = {name: node for node, name in enumerate(names)}
    recorded = journal.recorded(old_job)
    # Mapped tasks (``_resume_maps.py``): the ones that can be restored whole
    # count as recorded, so their dependents may be restored too.
    transitions = journal.transitions(old_job) if any(t.map_over for t in tasks) else []
    completed = completed_maps(tasks, transitions)

    def decode(task: str, blob: Any) -> Mapping[Any, Any]:
        return _decode(serializer, old_job, task, blob)

    maps = (tasks, completed, recorded, transitions, fingerprints, decode)
    whole = {node for node, _output in restore_maps(maps[0], {}, *maps[1:])[0]}
    reasons: dict[int, str] = {}
    for task, _blob, fingerprint, _reads in recorded:
        node = position.get(task)
        if node is not None and fingerprint != fingerprints[node]:
            reasons[node] = "its definition changed (code, dependencies or version)"
    # Everything downstream of a task that runs again runs again too: a
    # changed one, or one with no recorded output (never done, or forgotten).
    recorded_nodes = {position[task] for task, *_ in recorded if task in position} | whole
    for node in topological_order(graph):
        if node in reasons:
            continue
        again = [
            dep for dep in graph.dependencies[node] if dep in reasons or dep not in recorded_nodes
        ]
        if again:
            reasons[node] = f"it depends on {names[again[0]]!r}, which runs again"
    restored: list[tuple[int, Mapping[Any, Any]]] = []
    blobs: list[tuple[str, Any, Any]] = []
    done = {task for task, _b, _f, _r in recorded}
    for task, blob, _fingerprint, reads in recorded:
        node = position.get(task)
        if node is None or node in reasons:
            continue
        restored.append((node, decode(task, blob)))
        blobs.append((task, blob, reads))
    whole_maps, children, child_blobs, rows = restore_maps(maps[0], reasons, *maps[1:])
    restored += whole_maps
    blobs += child_blobs
    for node, why in reasons.items():
        if names[node] in done:
            log_outside(logging.INFO, "task_rerun", job_id=old_job, task=names[node], reason=why)
    return restored, blobs, children, rows


def _decode(serializer: Serializer, old_job: str, task: str, blob: Any) -> Mapping[Any, Any]:
    try:
        output = serializer.loads(blob)
    except BaseException as exc:  # noqa: BLE001 - the serializer is the user's
        raise JournalError(
            f"task {task!r}: its recorded output in job {old_job} cannot be read back: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(output, Mapping):
        raise JournalError(f"task {task!r}: its recorded output is not a mapping")
    return output
