"""Retry policies: how many retries, how long to wait before each, which failures to retry.

:class:`RetryPolicy` is public and frozen; every field is checked when it is
made (a TypeError or ValueError naming the field). Where a task's policy
comes from (its own, the job's, the defaults) is decided once, in
:func:`resolve`, when the job starts; the core then only asks the resolved
policy for a retry's delay.

Delays are reproducible: the jitter factor of a task's n-th retry is drawn
from a generator seeded by (the job's seed, the task's name, n), so a
task's delays are the same for the same seed whatever the timing of the
other tasks.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from daguerreo_actors._fields import is_positive_seconds

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool] | None

#: Retries when neither the task nor the job says.
DEFAULT_MAX_RETRIES = 5


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task is retried after a failed attempt.

    ``max_retries`` retries at most; ``delay`` seconds before the first,
    multiplied by ``backoff`` for each further one; each delay multiplied by
    a factor drawn uniformly from ``[1 - jitter, 1 + jitter]``, then capped
    at ``max_delay``. ``retry_on`` decides which exceptions are retried:
    None (every exception, BaseException included), a tuple of exception
    types, or a predicate ``(exception) -> bool``; an exception it does not
    accept fails the task at once. Timeouts are retried unless
    ``retry_timeouts`` is False.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: RetryOn = None
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        problems = policy_errors(self)
        if problems:
            # Every problem at once, as the type of the first.
            raise problems[0][0]("; ".join(text for _, text in problems))

    def delay_before(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number ``retry`` (1 for the first retry)."""
        seconds = self.delay * self.backoff ** (retry - 1)
        if self.jitter and rng is not None:
            seconds *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        return max(0.0, seconds)

    def retries(self, exc: BaseException) -> bool:
        """Does ``retry_on`` accept ``exc``? Runs user code (a predicate, ``__instancecheck__``)."""
        retry_on = self.retry_on
        if retry_on is None:
            return True
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))


def _number_error(value: object, low: float, high: float | None = None) -> type[Exception] | None:
    """TypeError for a non-number, ValueError for one out of [low, high], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return TypeError
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        return ValueError
    return None


def _is_exception_types(value: object) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in value
    )


def policy_errors(policy: RetryPolicy) -> list[tuple[type[Exception], str]]:
    """Every problem with a policy's fields, as (exception type, message)."""
    errors: list[tuple[type[Exception], str]] = []

    def bad(kind: type[Exception] | None, field: str, expected: str, value: object) -> None:
        if kind is not None:
            errors.append((kind, f"RetryPolicy field {field!r} must be {expected}, got {value!r}"))

    retries: Any = policy.max_retries
    if type(retries) is bool or not isinstance(retries, int):
        bad(TypeError, "max_retries", "an int >= 0", retries)
    elif retries < 0:
        bad(ValueError, "max_retries", "an int >= 0", retries)
    bad(_number_error(policy.delay, 0.0), "delay", "a finite number >= 0", policy.delay)
    bad(_number_error(policy.backoff, 1.0), "backoff", "a finite number >= 1", policy.backoff)
    if policy.max_delay is not None and not is_positive_seconds(policy.max_delay):
        kind = _number_error(policy.max_delay, 0.0) or ValueError
        bad(kind, "max_delay", "None or a number of seconds > 0", policy.max_delay)
    bad(_number_error(policy.jitter, 0.0, 1.0), "jitter", "a number in [0, 1]", policy.jitter)
    retry_on = policy.retry_on
    if not (retry_on is None or callable(retry_on) or _is_exception_types(retry_on)):
        bad(
            TypeError,
            "retry_on",
            "None, a tuple of exception types or a predicate (exception) -> bool",
            retry_on,
        )
    if not isinstance(policy.retry_timeouts, bool):
        bad(TypeError, "retry_timeouts", "a bool", policy.retry_timeouts)
    return errors


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    """A task's policy, with the number of retries settled (see :func:`resolve`)."""

    max_retries: int
    policy: RetryPolicy


def resolve(
    task_retries: int | None,
    task_policy: RetryPolicy | None,
    job_retries: int | None,
    job_policy: RetryPolicy | None,
) -> Resolved:
    """The retries: the task's ``max_retries``, else its policy's, else the job's
    ``max_retries``, else the job policy's, else 5. Everything else: the task's
    policy, else the job's, else the defaults."""
    policy = task_policy or job_policy or _default_policy()
    if task_retries is not None:
        retries = task_retries
    elif task_policy is not None:
        retries = task_policy.max_retries
    elif job_retries is not None:
        retries = job_retries
    elif job_policy is not None:
        retries = job_policy.max_retries
    else:
        retries = DEFAULT_MAX_RETRIES
    return Resolved(retries, policy)


_DEFAULT: list[RetryPolicy] = []


def _default_policy() -> RetryPolicy:
    # Made once: building (and checking) a RetryPolicy per task cost about
    # 4 µs per task in run() (9k-task wide job, profiled), a quarter of its cost.
    if not _DEFAULT:
        _DEFAULT.append(RetryPolicy())
    return _DEFAULT[0]


def jitter_rng(seed: int, task: str, retry: int) -> random.Random:
    """The generator of one retry's jitter: the same for the same (seed, task, retry)."""
    return random.Random(f"{seed}\x00{task}\x00{retry}")


def delays(
    resolved: Sequence[Resolved], names: Sequence[str], seed: int
) -> Callable[[int, int], float]:
    """``delay(node, retry)``: seconds before a node's retry number ``retry``."""

    def delay(node: int, retry: int) -> float:
        policy = resolved[node].policy
        if policy.delay == 0.0:
            return 0.0
        rng = jitter_rng(seed, names[node], retry) if policy.jitter else None
        return policy.delay_before(retry, rng)

    return delay
