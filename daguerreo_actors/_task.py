"""The :class:`Task` record and the checks of its fields.

A task checks its own fields when constructed; the checks live here as one
function, :func:`field_errors`, so a plain mapping given as a task is judged
by exactly the same rules (see ``_validation.py``).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import numbers
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Never, cast

from daguerreo_actors._errors import InvalidTasksError, TaskError
from daguerreo_actors._text import did_you_mean

#: A task function: ``fn(ctx, is_active) -> Mapping``, or an ``async def``
#: one (its coroutine runs on the engine's event loop).
TaskFn = Callable[
    [Mapping[Any, Any], Callable[[], bool]],
    Mapping[Any, Any] | Awaitable[Mapping[Any, Any]],
]

#: The keys a task mapping may have, in the order of Task's fields.
TASK_KEYS: tuple[str, ...] = (
    "name",
    "fn",
    "dependencies",
    "timeout",
    "max_retries",
    "continue_on_failure",
)


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Task:
    """One node of a job's DAG.

    ``fn(ctx, is_active)`` must return a mapping, which is merged into the
    job's context. ``dependencies`` names the tasks whose results this one
    needs (any iterable of names, stored as a frozenset); ``timeout``
    (seconds per attempt, stored as a float; None or inf for none) and
    ``max_retries`` (overriding the job's) bound each attempt and their
    number; a ``continue_on_failure`` task that fails does not fail the job.

    Raises :class:`InvalidTasksError` with every field error at once.
    """

    name: str
    fn: TaskFn
    dependencies: frozenset[str]
    timeout: float | None
    max_retries: int | None
    continue_on_failure: bool

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
        **unknown: Never,
    ) -> None:
        if unknown:
            raise _unknown_fields(unknown)
        deps, errors = _check(name, fn, dependencies, timeout, max_retries, continue_on_failure)
        if errors:
            raise InvalidTasksError(errors)
        set_field = object.__setattr__
        set_field(self, "name", name)
        set_field(self, "fn", fn)
        set_field(self, "dependencies", deps)
        set_field(self, "timeout", None if timeout is None else to_seconds(timeout))
        set_field(self, "max_retries", max_retries)
        set_field(self, "continue_on_failure", continue_on_failure)


def _unknown_fields(unknown: Mapping[str, object]) -> TypeError:
    names = "; ".join(f"{key!r}{did_you_mean(key, TASK_KEYS)}" for key in unknown)
    return TypeError(
        f"Task() got unknown field{'s' if len(unknown) > 1 else ''} {names}; "
        f"its fields are: {', '.join(TASK_KEYS)}"
    )


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
    """A number of seconds > 0: not bool, not NaN; inf and huge ints count."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    if isinstance(value, decimal.Decimal):
        return not value.is_nan() and value > 0
    if not isinstance(value, numbers.Real):
        return False
    try:
        if math.isnan(value):
            return False
    except OverflowError:  # a huge Fraction: a real number, not NaN
        pass
    positive: bool = cast(Any, value) > 0  # numbers.Real declares no ordering
    return positive


#: Timeouts above this many seconds (about 31 years) mean "no timeout": a
#: deadline that far away would overflow the platform's wait primitives.
MAX_TIMEOUT = 1e9


def to_seconds(value: float | int | decimal.Decimal) -> float:
    """Seconds as a float; inf (no timeout) for anything above MAX_TIMEOUT."""
    try:
        seconds = float(value)
    except OverflowError:
        return math.inf
    return math.inf if seconds > MAX_TIMEOUT else seconds


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
