"""Resuming a mapped task: its children's recorded outputs, by name (``task[i]``).

The journal records a mapped task's children like tasks (an output per
child that completed, under the parent's fingerprint) and the parent's
COMPLETED transition, not its output, which is only its children's
collected. When a job is resumed (``_resume.py``), a mapped task that is
not to run again (same fingerprint, its inputs restored) is:

- restored whole, if the old job completed it and every child's fate is
  recorded: its output is collected again from the children's outputs
  (None for a child that failed under ``continue_on_failure``), and its
  dependents may be restored too;
- otherwise expanded again when it becomes READY, its children whose
  outputs are recorded restored (UNSCHEDULED -> COMPLETED, ``restored``)
  and only the others run (``_map_shell.py``).

Either way the children's outputs are copied into the new job, so it can
be resumed in turn; a map restored whole also gets its children's fates
copied as restored transitions (the new job never expands it, so a later
resume counts its children from those rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daguerreo_actors._map_child import CHILD_NAME, child_name
from daguerreo_actors._maps import MapRun, collect
from daguerreo_actors._task import Task

_FAILED = ("failed", "invalid_result")


def completed_maps(tasks: Sequence[Task], transitions: list[tuple[Any, ...]]) -> dict[int, int]:
    """Mapped nodes the old job completed, each with its number of children."""
    mapped = {task.name: node for node, task in enumerate(tasks) if task.map_over is not None}
    if not mapped:
        return {}
    done = {mapped[row[0]] for row in transitions if row[0] in mapped and row[2] == "completed"}
    counts = dict.fromkeys(done, 0)
    for name, index in _children(transitions, mapped):
        node = mapped[name]
        if node in counts:
            counts[node] = max(counts[node], index + 1)
    return counts


def restore_maps(
    tasks: Sequence[Task],
    rerun: Mapping[int, str],
    completed: Mapping[int, int],
    recorded: list[tuple[str, Any, str, Any]],
    transitions: list[tuple[Any, ...]],
    fingerprints: Sequence[str],
    decode: Callable[[str, Any], Mapping[Any, Any]],
) -> tuple[
    list[tuple[int, Mapping[Any, Any]]],
    dict[str, Mapping[Any, Any]],
    list[Any],
    list[tuple[str, str]],
]:
    """What mapped tasks restore: (whole ones, by node), (children, by name), blobs to copy,
    and the (child, final state) of the maps restored whole."""
    mapped = {
        task.name: node
        for node, task in enumerate(tasks)
        if task.map_over is not None and node not in rerun
    }
    whole: list[tuple[int, Mapping[Any, Any]]] = []
    children: dict[str, Mapping[Any, Any]] = {}
    blobs: list[Any] = []
    rows: list[tuple[str, str]] = []
    if not mapped:
        return whole, children, blobs, rows
    outputs: dict[int, dict[int, Mapping[Any, Any]]] = {}
    for task, blob, fingerprint, reads in recorded:
        match = CHILD_NAME.fullmatch(task)
        node = mapped.get(match.group(1)) if match else None
        if node is None or fingerprint != fingerprints[node]:
            continue
        output = decode(task, blob)
        outputs.setdefault(node, {})[int(match.group(2))] = output  # type: ignore[union-attr]
        children[task] = output
        blobs.append((task, blob, reads))
    states = {(name, index): state for name, index, state in _children_states(transitions, mapped)}
    failed = {child for child, state in states.items() if state in _FAILED}
    for node, count in completed.items():
        if node in rerun:
            continue
        name, found = tasks[node].name, outputs.get(node, {})
        if all(i in found or (name, i) in failed for i in range(count)):
            run = MapRun(0, count, _keys(tasks[node]), [found.get(i) for i in range(count)], 0)
            whole.append((node, collect(run)))
            for i in range(count):
                child = child_name(name, i)
                children.pop(child, None)
                rows.append((child, states.get((name, i), "completed")))
    return whole, children, blobs, rows


def _keys(task: Task) -> tuple[str, ...]:
    from daguerreo_actors._dag import DagFunction

    return task.fn.outputs if isinstance(task.fn, DagFunction) else ()


def _children(
    transitions: list[tuple[Any, ...]], mapped: Mapping[str, int]
) -> list[tuple[str, int]]:
    return [(name, index) for name, index, _state in _children_states(transitions, mapped)]


def _children_states(
    transitions: list[tuple[Any, ...]], mapped: Mapping[str, int]
) -> list[tuple[str, int, str]]:
    found = []
    for row in transitions:
        match = CHILD_NAME.fullmatch(row[0]) if isinstance(row[0], str) else None
        if match and match.group(1) in mapped:
            found.append((match.group(1), int(match.group(2)), str(row[2])))
    return found
