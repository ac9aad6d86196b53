"""The checks of a task's fields: one function per field, one table.

Each check takes the value given and returns ``(stored value, problem)``:
the value as the :class:`~daguerreo_actors.Task` stores it (a frozenset of
dependency names, seconds as a float, a read-only resources mapping) and
None, or a sentence saying what is wrong. ``Task()`` and a plain mapping
given as a task are judged by exactly this table (``_task.py``,
``_validation.py``).
"""

from __future__ import annotations

import decimal
import math
import numbers
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

Check = Callable[[object], tuple[object, "str | None"]]

#: The ``run_if`` rules a task may have.
RUN_IF = ("all_completed", "all_done", "any_failed")

#: Timeouts above this many seconds (about 31 years) mean "no timeout": a
#: deadline that far away would overflow the platform's wait primitives.
MAX_TIMEOUT = 1e9


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


def to_seconds(value: float | int | decimal.Decimal) -> float:
    """Seconds as a float; inf (no timeout) for anything above MAX_TIMEOUT."""
    try:
        seconds = float(value)
    except OverflowError:
        return math.inf
    return math.inf if seconds > MAX_TIMEOUT else seconds


def describe(value: object) -> str:
    """A value for an error message: its type and a cut repr."""
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 - user objects
        text = "<unprintable>"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _name(value: object) -> tuple[object, str | None]:
    if not isinstance(value, str) or not value:
        return value, f"must be a non-empty str, got {describe(value)}"
    return value, None


def _fn(value: object) -> tuple[object, str | None]:
    if not callable(value):
        return value, f"must be callable as fn(ctx, is_active), got {describe(value)}"
    return value, None


def _dependencies(value: object) -> tuple[object, str | None]:
    if isinstance(value, frozenset) and all(isinstance(d, str) and d for d in value):
        return value, None
    if isinstance(value, (str, bytes)):
        return frozenset(), (
            f"must be an iterable of task names, got a bare {type(value).__name__} "
            f"{value!r} (write [{value!r}] for one dependency)"
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        return frozenset(), f"must be an iterable of task names, got {describe(value)}"
    items = list(value)
    wrong = [d for d in items if not (isinstance(d, str) and d)]
    if wrong:
        return frozenset(), "must hold only non-empty str task names, got " + ", ".join(
            describe(d) for d in wrong
        )
    return frozenset(items), None


def _timeout(value: object) -> tuple[object, str | None]:
    if value is None:
        return None, None
    if not is_positive_seconds(value):
        return None, (
            f"must be None or a number of seconds > 0 (inf for none), got {describe(value)}"
        )
    return to_seconds(cast(float, value)), None


def _max_retries(value: object) -> tuple[object, str | None]:
    if value is not None and (type(value) is bool or not isinstance(value, int) or value < 0):
        return None, f"must be None or an int >= 0, got {describe(value)}"
    return value, None


def _bool(value: object) -> tuple[object, str | None]:
    if not isinstance(value, bool):
        return False, f"must be a bool, got {describe(value)}"
    return value, None


def _retry(value: object) -> tuple[object, str | None]:
    from daguerreo_actors._retry import RetryPolicy

    if value is not None and not isinstance(value, RetryPolicy):
        return None, f"must be None or a RetryPolicy, got {describe(value)}"
    return value, None


def _run_if(value: object) -> tuple[object, str | None]:
    if value not in RUN_IF:
        from daguerreo_actors._text import did_you_mean

        return "all_completed", (
            f"must be one of {', '.join(RUN_IF)}, got {describe(value)}"
            f"{did_you_mean(value, RUN_IF)}"
        )
    return value, None


EMPTY: Mapping[str, int] = types.MappingProxyType({})


def _resources(value: object) -> tuple[object, str | None]:
    if value is None:
        return EMPTY, None
    if not isinstance(value, Mapping):
        return EMPTY, f"must be a mapping of resource names to amounts, got {describe(value)}"
    wrong = [
        f"{key!r}: {describe(amount)}"
        for key, amount in value.items()
        if not isinstance(key, str)
        or not key
        or type(amount) is bool
        or not isinstance(amount, int)
        or amount < 1
    ]
    if wrong:
        return EMPTY, (
            "must map non-empty str resource names to ints >= 1, got " + ", ".join(wrong)
        )
    return types.MappingProxyType(dict(value)), None


def _seconds_or_none(value: object) -> tuple[object, str | None]:
    if value is None:
        return None, None
    if not is_positive_seconds(value):
        return None, f"must be None or a number of seconds > 0, got {describe(value)}"
    return to_seconds(cast(float, value)), None


def _kill_after(value: object) -> tuple[object, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return 5.0, f"must be a number of seconds >= 0 (inf: never), got {describe(value)}"
    if math.isnan(value) or value < 0:
        return 5.0, f"must be a number of seconds >= 0 (inf: never), got {describe(value)}"
    return to_seconds(value), None


def _executor(value: object) -> tuple[object, str | None]:
    if value is None or value == "processes":
        return value, None
    from concurrent.futures import Executor

    from daguerreo_actors._tiers import is_dask_client, is_tier

    if isinstance(value, Executor) or is_dask_client(value) or is_tier(value):
        return value, None
    return None, (
        "must be None, 'processes', a concurrent.futures.Executor, a ProcessTier or a "
        f"distributed.Client, got {describe(value)}"
    )


def _version(value: object) -> tuple[object, str | None]:
    if value is None or (type(value) in (str, int)):
        return value, None
    return None, f"must be None, a str or an int, got {describe(value)}"


def _priority(value: object) -> tuple[object, str | None]:
    if type(value) is bool or not isinstance(value, int):
        return 0, f"must be an int, got {describe(value)}"
    return value, None


def _map_over(value: object) -> tuple[object, str | None]:
    if value is None or (type(value) is str and value):
        return value, None
    return None, f"must be None or the non-empty str ctx key to map over, got {describe(value)}"


def _map_as(value: object) -> tuple[object, str | None]:
    if type(value) is str and value:
        return value, None
    return "item", f"must be a non-empty str (the item's ctx key), got {describe(value)}"


#: The fields of a task, in order, with their checks and defaults (``...``: required).
FIELDS: dict[str, tuple[Check, object]] = {
    "name": (_name, ...),
    "fn": (_fn, ...),
    "dependencies": (_dependencies, ()),
    "timeout": (_timeout, None),
    "max_retries": (_max_retries, None),
    "continue_on_failure": (_bool, False),
    "retry": (_retry, None),
    "run_if": (_run_if, "all_completed"),
    "resources": (_resources, None),
    "priority": (_priority, 0),
    "overlap": (_bool, False),
    "kill_after": (_kill_after, 5.0),
    "interrupt": (_bool, False),
    "heartbeat": (_seconds_or_none, None),
    "executor": (_executor, None),
    "version": (_version, None),
    "cache": (_bool, False),
    "map_over": (_map_over, None),
    "map_as": (_map_as, "item"),
}
