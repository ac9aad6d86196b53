"""Turning whatever the user gave into tasks and a :class:`Graph`, or every error.

``validate_tasks`` is public; ``build_graph`` is what ``run`` uses, returning
the validated tasks together with the integer graph the scheduler core
needs, so the work is done once. All problems are collected, in task-list
order, before anything is raised.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from daguerreo_actors._errors import InvalidTasksError, TaskError
from daguerreo_actors._graph import Graph, build_adjacency, find_cycles
from daguerreo_actors._map_child import CHILD_NAME
from daguerreo_actors._task import TASK_KEYS, Task, field_errors
from daguerreo_actors._text import did_you_mean


def validate_tasks(tasks: Iterable[Task | Mapping[str, Any]]) -> tuple[Task, ...]:
    """Check a task list; return it as a tuple of :class:`Task`, order kept.

    Raises :class:`InvalidTasksError` listing every problem found.
    """
    return build_graph(tasks)[0]


def build_graph(
    tasks: Iterable[Task | Mapping[str, Any]],
    resources: Mapping[str, int] | None = None,
) -> tuple[tuple[Task, ...], Graph]:
    """Validate ``tasks`` and build their integer graph in one pass.

    With ``resources`` (the job's capacities), a task naming a resource the
    job does not define, or needing more than its capacity, is an error too.
    """
    # Building the graph allocates a few containers per task and frees none:
    # at 100k tasks the cyclic collector's full passes over them tripled the
    # cost per task (docs/benchmarks.md). Reference counting still frees
    # everything; the collector is back on as soon as the build is done.
    # (Not a contextmanager: that costs about 2 µs, a 1% of a 1-task job.)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_graph(tasks, resources)
    finally:
        if was_enabled:
            gc.enable()


def _build_graph(
    tasks: Iterable[Task | Mapping[str, Any]],
    resources: Mapping[str, int] | None,
) -> tuple[tuple[Task, ...], Graph]:
    if isinstance(tasks, (str, bytes, Mapping, Task)) or not isinstance(tasks, Iterable):
        hint = " (wrap a single task in a list)" if isinstance(tasks, (Mapping, Task)) else ""
        raise TypeError(
            "tasks must be an iterable of Task objects or task mappings, "
            f"got {type(tasks).__name__}{hint}"
        )
    errors: list[TaskError] = []
    converted: list[Task] = []
    # Names of mapping tasks that were rejected: tasks depending on them are
    # not also reported as having missing dependencies.
    rejected: set[str] = set()
    for position, item in enumerate(tasks):
        if isinstance(item, Task):
            converted.append(item)
        elif isinstance(item, Mapping):
            task = _from_mapping(position, item, errors)
            if task is not None:
                converted.append(task)
            elif isinstance(item.get("name"), str):
                rejected.add(item["name"])
        else:
            errors.append(
                TaskError(
                    "invalid-task",
                    None,
                    f"item #{position} is not a Task or a mapping, got {type(item).__name__}",
                )
            )

    index: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for position, task in enumerate(converted):
        if task.name in index:
            duplicates[task.name] = duplicates.get(task.name, 1) + 1
        else:
            index[task.name] = position
    for name, count in duplicates.items():
        errors.append(TaskError("duplicate-name", name, f"the name is used by {count} tasks"))
    mapped = {task.name for task in converted if task.map_over is not None}
    if mapped:
        for task in converted:
            match = CHILD_NAME.fullmatch(task.name)
            if match is not None and match.group(1) in mapped:
                errors.append(
                    TaskError(
                        "duplicate-name",
                        task.name,
                        f"the name is that of a child of the mapped task {match.group(1)!r}",
                    )
                )

    dependencies: list[tuple[int, ...]] = []
    for task in converted:
        deps: list[int] = []
        missing: list[str] = []
        for dep in task.dependencies:
            dep_index = index.get(dep)
            if dep_index is None:
                if dep not in rejected:
                    missing.append(dep)
            else:
                deps.append(dep_index)
        if missing:
            missing.sort()
            errors.append(
                TaskError(
                    "missing-dependencies",
                    task.name,
                    "depends on tasks that do not exist: " + ", ".join(repr(m) for m in missing),
                )
            )
        # Sorted so the graph (and so the ready order) never depends on
        # frozenset iteration order.
        deps.sort()
        dependencies.append(tuple(deps))

    dependents = build_adjacency(dependencies)
    if resources is not None:
        errors.extend(resource_errors(converted, resources))
    for cycle in find_cycles(dependencies, dependents):
        cycle_names = [converted[node].name for node in cycle]
        errors.append(
            TaskError(
                "dependency-cycle",
                cycle_names[0],
                "dependency cycle (each task depends on the next): " + " -> ".join(cycle_names),
            )
        )

    if errors:
        raise InvalidTasksError(errors)
    graph = Graph(
        names=[task.name for task in converted],
        dependencies=dependencies,
        dependents=list(dependents),
    )
    return tuple(converted), graph


def _from_mapping(position: int, item: Mapping[Any, Any], errors: list[TaskError]) -> Task | None:
    name = item.get("name")
    label = name if isinstance(name, str) and name else None
    problems: list[TaskError] = []
    for key in item:
        if key in TASK_KEYS:
            continue
        hint = did_you_mean(key, TASK_KEYS)
        known = ", ".join(TASK_KEYS)
        problems.append(
            TaskError(
                "invalid-task",
                label,
                f"unknown key {key!r}{hint}; task keys are: {known}",
            )
        )
    for required in ("name", "fn"):
        if required not in item:
            where = "" if label else f"item #{position} "
            problems.append(TaskError("invalid-task", label, f"{where}has no {required!r} key"))
    known_fields = {k: item[k] for k in TASK_KEYS if k in item}
    dependencies = known_fields.get("dependencies")
    if isinstance(dependencies, Iterator):
        # Read a one-shot iterable (a generator) once: field_errors would
        # exhaust it, and Task() below would then silently get no dependencies.
        known_fields["dependencies"] = tuple(dependencies)
    problems.extend(field_errors(known_fields))
    if problems:
        errors.extend(problems)
        return None
    return Task(**known_fields)


def resource_errors(tasks: Iterable[Task], capacity: Mapping[str, int]) -> list[TaskError]:
    """A task needing a resource the job lacks, or more than its capacity."""
    errors = []
    for task in tasks:
        for name, amount in task.resources.items():
            if name not in capacity:
                defined = ", ".join(map(repr, capacity)) or "none"
                errors.append(
                    TaskError(
                        "invalid-field",
                        task.name,
                        f"field 'resources' names {name!r}, which the job does not define "
                        f"(run(resources=...) defines {defined}){did_you_mean(name, capacity)}",
                    )
                )
            elif amount > capacity[name]:
                errors.append(
                    TaskError(
                        "invalid-field",
                        task.name,
                        f"field 'resources' needs {amount} of {name!r}, more than the "
                        f"job's capacity of {capacity[name]}",
                    )
                )
    return errors
