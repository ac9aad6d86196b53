"""The options of ``run()``, checked once, before anything starts.

:class:`JobOptions` holds what the JobActor needs of them; :func:`job_options`
checks each (a TypeError or ValueError naming the option) and settles the
derived ones: the job's deadline on its clock, the retry policy of every
task (``_retry.py``), the jitter seed.
"""

from __future__ import annotations

import dataclasses
import decimal
import importlib.util
import math
import numbers
import os
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from daguerreo_actors._clock import Clock
from daguerreo_actors._ctx import ON_CONFLICT
from daguerreo_actors._fields import is_positive_seconds, to_seconds
from daguerreo_actors._map_child import DEFAULT_MAX_MAP
from daguerreo_actors._retry import Resolved, RetryPolicy, resolve
from daguerreo_actors._task import Task
from daguerreo_actors._tiers import is_dask_client, is_tier

if TYPE_CHECKING:
    from daguerreo_actors._journal import JobJournal

#: The default ``max_concurrency``: one running task per CPU.
DEFAULT_MAX_CONCURRENCY: int = os.cpu_count() or 1

#: The ``on_failure`` values ``run`` accepts.
ON_FAILURE = ("stop", "continue")


@dataclasses.dataclass(frozen=True, slots=True)
class JobOptions:
    """A job's options, checked; one entry per task where per-task."""

    clock: Clock
    started: float
    job_deadline: float | None
    max_concurrency: int
    executor: object
    log_values: bool
    on_conflict: str
    on_failure: str
    capacity: Mapping[str, int]
    retries: tuple[Resolved, ...]
    seed: int
    #: The job's side of its journal (``_journal.py``), or None.
    journal: JobJournal | None = None
    #: A resumed job's restored outputs, by node, in their recorded order.
    restored: tuple[tuple[int, Mapping[Any, Any]], ...] = ()
    #: The most items a mapped task runs (``run(max_map=...)``).
    max_map: int = DEFAULT_MAX_MAP
    #: On a Dask cluster: fetch the values of ``JobResult.ctx`` (``run(gather=...)``).
    gather: bool = True


def _option_error(name: str, value: object, expected: str) -> Exception:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | decimal.Decimal):
        return TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return ValueError(f"{name} must be {expected}, got {value!r}")


def _choice(name: str, value: object, choices: Sequence[str]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_options(
    *,
    timeout: object,
    max_retries: object,
    retry: object,
    seed: object,
    max_concurrency: object,
    executor: object,
    log_values: object,
    on_conflict: object,
    on_failure: object,
    resources: object,
) -> None:
    """Raise a TypeError or ValueError naming the first bad option."""
    if timeout is not None and not is_positive_seconds(timeout):
        raise _option_error("timeout", timeout, "None or a number of seconds > 0 (inf for none)")
    if max_retries is not None:
        if type(max_retries) is bool or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be None or an int >= 0, got {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be None or an int >= 0, got {max_retries!r}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be None or a RetryPolicy, got {type(retry).__name__}")
    if max_retries is not None and retry is not None:
        raise ValueError(
            "max_retries and retry are both given: give the retries in one place "
            "(RetryPolicy(max_retries=...))"
        )
    if seed is not None and (type(seed) is bool or not isinstance(seed, int)):
        raise TypeError(f"seed must be None or an int, got {seed!r}")
    if type(max_concurrency) is bool or not isinstance(max_concurrency, int):
        raise TypeError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
    if executor is not None and not isinstance(executor, Executor) and executor != "processes":
        if not is_dask_client(executor) and not is_tier(executor):
            raise TypeError(
                "executor must be None, 'processes', a concurrent.futures.Executor, a "
                f"ProcessTier or a distributed.Client, got {type(executor).__name__}"
            )
        if is_dask_client(executor) and importlib.util.find_spec("distributed") is None:
            raise ImportError(
                "running on a dask cluster needs the dask extra: "
                "pip install 'daguerreo-actors[dask]'"
            )
    _choice("on_conflict", on_conflict, ON_CONFLICT)
    _choice("on_failure", on_failure, ON_FAILURE)
    if not isinstance(log_values, bool):
        raise TypeError(f"log_values must be a bool, got {type(log_values).__name__}")
    if resources is not None:
        if not isinstance(resources, Mapping):
            raise TypeError(f"resources must be a mapping of names to ints, got {resources!r}")
        for name, amount in resources.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"resources must have non-empty str names, got {name!r}")
            if type(amount) is bool or not isinstance(amount, int):
                raise TypeError(f"resources[{name!r}] must be an int >= 1, got {amount!r}")
            if amount < 1:
                raise ValueError(f"resources[{name!r}] must be an int >= 1, got {amount!r}")


def job_options(
    tasks: Sequence[Task],
    *,
    clock: Clock,
    started: float,
    timeout: Any,
    max_retries: int | None,
    retry: RetryPolicy | None,
    seed: int | None,
    max_concurrency: int,
    executor: object,
    log_values: bool,
    on_conflict: str,
    on_failure: str,
    resources: Mapping[str, int] | None,
) -> JobOptions:
    """The checked options (``check_options`` passed) with what derives from them."""
    job_deadline = None
    if timeout is not None:
        seconds = to_seconds(timeout)
        if not math.isinf(seconds):
            job_deadline = started + seconds
    return JobOptions(
        clock=clock,
        started=started,
        job_deadline=job_deadline,
        max_concurrency=max_concurrency,
        executor=executor,
        log_values=log_values,
        on_conflict=on_conflict,
        on_failure=on_failure,
        capacity=dict(resources or {}),
        retries=_resolve_all(tasks, max_retries, retry),
        seed=random.getrandbits(64) if seed is None else seed,
    )


def _resolve_all(
    tasks: Sequence[Task], max_retries: int | None, retry: RetryPolicy | None
) -> tuple[Resolved, ...]:
    """Each task's retries and policy, resolved once per distinct pair (most tasks
    share one: resolving each cost two calls per task of every job)."""
    resolved: dict[tuple[int | None, int], Resolved] = {}
    found = []
    for task in tasks:
        key = (task.max_retries, id(task.retry))  # the tasks keep each policy alive
        one = resolved.get(key)
        if one is None:
            one = resolved[key] = resolve(task.max_retries, task.retry, max_retries, retry)
        found.append(one)
    return tuple(found)
