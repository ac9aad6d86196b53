"""The :class:`Task` record and the checks of its fields.

A task checks its own fields when constructed; the checks live here as one
function, :func:`field_errors`, so a plain mapping given as a task is judged
by exactly the same rules (see ``_validation.py``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from daguerreo_actors._errors import InvalidTasksError, TaskError

#: A task function: ``fn(ctx, is_active) -> Mapping``.
TaskFn = Callable[[Mapping[Any, Any], Callable[[], bool]], Mapping[Any, Any]]

#: The keys a task mapping may have, in the order of Task's fields.
TASK_KEYS: tuple[str, ...] = (
    "name",
    "fn",
    "dependencies",
    "timeout",
    "max_retries",
    "continue_on_failure",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """One node of a job's DAG.

    ``fn(ctx, is_active)`` must return a mapping, which is merged into the
    job's context. ``dependencies`` names the tasks whose results this one
    needs; ``timeout`` (seconds, per attempt) and ``max_retries`` (overriding
    the job's) bound each attempt and their number; a ``continue_on_failure``
    task that fails does not fail the job.
    """

    name: str
    fn: TaskFn
    dependencies: frozenset[str] = frozenset()
    timeout: float | None = None
    max_retries: int | None = None
    continue_on_failure: bool = False

    def __post_init__(self) -> None:
        deps, errors = _check(
            self.name,
            self.fn,
            self.dependencies,
            self.timeout,
            self.max_retries,
            self.continue_on_failure,
        )
        if errors:
            raise InvalidTasksError(errors)
        if deps is not self.dependencies:
            object.__setattr__(self, "dependencies", deps)
        if self.timeout is not None and type(self.timeout) is not float:
            object.__setattr__(self, "timeout", float(self.timeout))


def field_errors(fields: Mapping[str, Any]) -> list[TaskError]:
    """Every error in the fields a task mapping has (absent ones are not judged)."""
    _, errors = _check(
        fields.get("name"),
        fields.get("fn"),
        fields.get("dependencies", ()),
        fields.get("timeout"),
        fields.get("max_retries"),
        fields.get("continue_on_failure", False),
        skip=frozenset(k for k in ("name", "fn") if k not in fields),
    )
    return errors


def _check(
    name: object,
    fn: object,
    dependencies: object,
    timeout: object,
    max_retries: object,
    continue_on_failure: object,
    skip: frozenset[str] = frozenset(),
) -> tuple[frozenset[str], list[TaskError]]:
    errors: list[TaskError] = []
    task = name if isinstance(name, str) and name else None

    def bad(field: str, message: str) -> None:
        errors.append(TaskError("invalid-field", task, f"field {field!r} {message}"))

    if "name" in skip:
        pass
    elif not isinstance(name, str):
        bad("name", f"must be a non-empty str, got {_describe(name)}")
    elif not name:
        bad("name", "must be a non-empty str, got ''")

    if "fn" not in skip and not callable(fn):
        bad("fn", f"must be callable as fn(ctx, is_active), got {_describe(fn)}")

    deps: frozenset[str] = frozenset()
    if isinstance(dependencies, frozenset) and all(isinstance(d, str) and d for d in dependencies):
        deps = dependencies
    elif isinstance(dependencies, (str, bytes)):
        bad(
            "dependencies",
            "must be an iterable of task names, got a bare "
            f"{type(dependencies).__name__} {dependencies!r} "
            f"(write [{dependencies!r}] for one dependency)",
        )
    elif isinstance(dependencies, Mapping) or not isinstance(dependencies, Iterable):
        bad(
            "dependencies",
            f"must be an iterable of task names, got {_describe(dependencies)}",
        )
    else:
        items = list(dependencies)
        wrong = [d for d in items if not (isinstance(d, str) and d)]
        if wrong:
            bad(
                "dependencies",
                "must hold only non-empty str task names, got "
                + ", ".join(_describe(d) for d in wrong),
            )
        else:
            deps = frozenset(items)

    if timeout is not None and not is_positive_seconds(timeout):
        bad(
            "timeout",
            f"must be None or a number of seconds > 0 (inf for none), got {_describe(timeout)}",
        )

    if max_retries is not None and (
        type(max_retries) is bool or not isinstance(max_retries, int) or max_retries < 0
    ):
        bad("max_retries", f"must be None or an int >= 0, got {_describe(max_retries)}")

    if not isinstance(continue_on_failure, bool):
        bad("continue_on_failure", f"must be a bool, got {_describe(continue_on_failure)}")

    return deps, errors


def is_positive_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    number = float(value)
    return not math.isnan(number) and number > 0


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
