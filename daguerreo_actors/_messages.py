"""The messages actors send each other: small, frozen, slotted dataclasses.

Who sends what (the success path has two hops; the supervisor is off it):

- JobActor -> TaskActor: :class:`RunAttempt` (the ctx snapshot travels with it).
- TaskActor -> JobActor: :class:`Succeeded` (naming the offer its thread
  took, if any) or :class:`ReturnedInvalid`.
- TaskActor -> Supervisor: :class:`AttemptRaised`; the supervisor answers the
  JobActor with :class:`RetryDecision`.
- JobActor -> Supervisor: :class:`ArmDeadline` (only for tasks with a
  timeout); at the deadline the supervisor sends :class:`DeadlinePassed`, and
  at the job's deadline :class:`JobDeadlinePassed`.
- ``Job.cancel()`` -> JobActor: :class:`CancelJob`.
- Supervisor -> JobActor: :class:`InternalFailure` if the supervisor breaks.
- JobActor -> each listener proxy: :class:`EventBatch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daguerreo_actors._events import Event


@dataclasses.dataclass(frozen=True, slots=True)
class RunAttempt:
    attempt: int
    ctx: Mapping[Any, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Succeeded:
    node: int
    attempt: int
    result: Mapping[Any, Any]
    #: The offered node the reporting thread took, and when (monotonic).
    claimed: int | None = None
    claimed_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class ReturnedInvalid:
    node: int
    attempt: int
    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRaised:
    node: int
    attempt: int
    exception: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class RetryDecision:
    node: int
    attempt: int
    exception: BaseException
    retry: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ArmDeadline:
    node: int
    attempt: int
    deadline: float


@dataclasses.dataclass(frozen=True, slots=True)
class DeadlinePassed:
    node: int
    attempt: int
    retry: bool


@dataclasses.dataclass(frozen=True, slots=True)
class JobDeadlinePassed:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class CancelJob:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class InternalFailure:
    where: str
    exception: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class EventBatch:
    events: tuple[Event, ...]
