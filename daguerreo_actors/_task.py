"""The :class:`Task` record: one node of a job's DAG.

A task checks its own fields when constructed, with the table of checks in
``_fields.py``, the same one a plain mapping given as a task is judged by
(see ``_validation.py``), so both report the same errors, all at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Never

from daguerreo_actors._errors import InvalidTasksError, TaskError
from daguerreo_actors._fields import FIELDS
from daguerreo_actors._text import did_you_mean

if TYPE_CHECKING:
    from daguerreo_actors._retry import RetryPolicy

#: A task function: ``fn(ctx, is_active) -> Mapping``, or an ``async def``
#: one (its coroutine runs on the engine's event loop).
TaskFn = Callable[
    [Mapping[Any, Any], Callable[[], bool]],
    Mapping[Any, Any] | Awaitable[Mapping[Any, Any]],
]

#: The keys a task mapping may have, in the order of Task's fields.
TASK_KEYS: tuple[str, ...] = tuple(FIELDS)


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Task:
    """One node of a job's DAG.

    ``fn(ctx, is_active)`` must return a mapping, which is merged into the
    job's context. ``dependencies`` names the tasks whose results this one
    needs (any iterable of names, stored as a frozenset); ``timeout``
    (seconds per attempt, stored as a float; None or inf for none);
    ``max_retries`` and ``retry`` (a :class:`RetryPolicy`) say how it is
    retried, overriding the job's; a ``continue_on_failure`` task that fails
    does not fail the job. ``run_if`` says when it may run: ``"all_completed"``
    (every dependency completed), ``"all_done"`` (every dependency ended,
    however: cleanup) or ``"any_failed"`` (every dependency ended and one
    failed: alerting). ``resources`` maps names of the job's resources to
    the amount an attempt holds; among READY tasks a higher ``priority``
    starts first. An attempt that timed out keeps its slot until its code
    returns, and the retry waits for it, unless ``overlap`` (for tasks safe
    to run twice at once); ``kill_after`` seconds past its deadline (or the
    job's end) the engine stops the code where its tier can (a worker
    process is killed; a thread is interrupted only with ``interrupt``);
    with ``heartbeat``, an attempt that has not called ``is_active()`` for
    that long times out; ``executor`` runs this task elsewhere than the
    job's executor. ``version`` (a str or int) is part of the task's
    fingerprint: bump it to make a journal's resume or cache run the task
    again when something the code cannot show changed (data, a library).
    With ``cache`` and a journal, a recorded output of the same definition is
    reused when the ctx keys the task read then hold the same values now.
    With ``map_over`` (a ctx key holding a list or tuple), the task runs once
    per item when it becomes READY, each run a child task ``name[i]`` whose
    ctx holds the item at ``map_as``; its output is, per key, the list of the
    children's values in item order (``_maps.py``).

    Raises :class:`InvalidTasksError` with every field error at once.
    """

    name: str
    fn: TaskFn
    dependencies: frozenset[str]
    timeout: float | None
    max_retries: int | None
    continue_on_failure: bool
    retry: RetryPolicy | None
    run_if: str
    resources: Mapping[str, int]
    priority: int
    overlap: bool
    kill_after: float
    interrupt: bool
    heartbeat: float | None
    executor: object
    version: str | int | None
    cache: bool
    map_over: str | None
    map_as: str

    # A hand-written __init__ so ``dependencies`` can be typed as the
    # iterable it accepts while the field holds the frozenset it stores.
    def __init__(
        self,
        name: str,
        fn: TaskFn,
        dependencies: Iterable[str] = (),
        timeout: float | None = None,
        max_retries: int | None = None,
        continue_on_failure: bool = False,
        *,
        retry: RetryPolicy | None = None,
        run_if: str = "all_completed",
        resources: Mapping[str, int] | None = None,
        priority: int = 0,
        overlap: bool = False,
        kill_after: float = 5.0,
        interrupt: bool = False,
        heartbeat: float | None = None,
        executor: object = None,
        version: str | int | None = None,
        cache: bool = False,
        map_over: str | None = None,
        map_as: str = "item",
        **unknown: Never,
    ) -> None:
        if unknown:
            raise _unknown_fields(unknown)
        given = {
            "name": name,
            "fn": fn,
            "dependencies": dependencies,
            "timeout": timeout,
            "max_retries": max_retries,
            "continue_on_failure": continue_on_failure,
            "retry": retry,
            "run_if": run_if,
            "resources": resources,
            "priority": priority,
            "overlap": overlap,
            "kill_after": kill_after,
            "interrupt": interrupt,
            "heartbeat": heartbeat,
            "executor": executor,
            "version": version,
            "cache": cache,
            "map_over": map_over,
            "map_as": map_as,
        }
        stored, errors = check(given)
        if errors:
            raise InvalidTasksError(errors)
        set_field = object.__setattr__
        for field, value in stored.items():
            set_field(self, field, value)


def _unknown_fields(unknown: Mapping[str, object]) -> TypeError:
    names = "; ".join(f"{key!r}{did_you_mean(key, TASK_KEYS)}" for key in unknown)
    return TypeError(
        f"Task() got unknown field{'s' if len(unknown) > 1 else ''} {names}; "
        f"its fields are: {', '.join(TASK_KEYS)}"
    )


def field_errors(fields: Mapping[str, Any]) -> list[TaskError]:
    """Every error in the fields a task mapping has (absent ones are not judged)."""
    return check(fields, partial=True)[1]


def check(
    given: Mapping[str, Any], *, partial: bool = False
) -> tuple[dict[str, object], list[TaskError]]:
    """The stored value of every field, and every problem, in field order.

    With ``partial``, a missing required field (name, fn) is not judged.
    """
    name = given.get("name")
    task = name if isinstance(name, str) and name else None
    stored: dict[str, object] = {}
    errors: list[TaskError] = []
    for field, (check_field, default) in FIELDS.items():
        if field not in given:
            if default is ... and partial:
                continue
            value: object = default
        else:
            value = given[field]
        stored[field], problem = check_field(value)
        if problem is not None:
            errors.append(TaskError("invalid-field", task, f"field {field!r} {problem}"))
    if given.get("max_retries") is not None and given.get("retry") is not None:
        errors.append(
            TaskError(
                "invalid-field",
                task,
                "fields 'max_retries' and 'retry' are both given: give the retries in "
                "one place (RetryPolicy(max_retries=...))",
            )
        )
    if stored.get("map_over") is not None and stored.get("cache"):
        errors.append(
            TaskError(
                "invalid-field",
                task,
                "fields 'map_over' and 'cache' are both given: a mapped task is not cached "
                "(with a journal, a resumed job reruns only the children that did not complete)",
            )
        )
    if stored.get("run_if") == "any_failed" and not stored.get("dependencies"):
        errors.append(
            TaskError(
                "invalid-field",
                task,
                "field 'run_if' is 'any_failed' but the task has no dependencies to fail",
            )
        )
    return stored, errors
