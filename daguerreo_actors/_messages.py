"""The messages a job's actors send each other: small, frozen, slotted dataclasses.

Into the JobActor's mailbox (``_job_actor.py``):

- from ``run()``: :class:`Start`;
- from a task's thread, through the JobActor's commit methods, which settle
  the attempt's fate first: :class:`Succeeded` (naming the offer the
  reporting thread took, if any), :class:`Raised`, :class:`Invalid`;
- from the supervisor's timers: :class:`DeadlinePassed`,
  :class:`JobDeadlinePassed`, :class:`RetryDue`;
- from a task's thread, when an abandoned attempt's code is done at last:
  :class:`CodeReturned`;
- from ``Job.cancel()``: :class:`CancelJob`;
- from anything of the job stopped from outside (the supervisor, a listener
  proxy): :class:`ActorLost`; from a TaskActor's own bug: :class:`InternalFailure`.

Out of it: ``RunAttempt`` to TaskActors (``_task_actor.py``) and
:class:`EventBatch` to each listener's proxy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daguerreo_actors._events import Event

if TYPE_CHECKING:
    from daguerreo_actors._attempt import Attempt


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Succeeded:
    attempt: Attempt
    output: Mapping[Any, Any]
    #: The offered attempt the reporting thread took and started, if any.
    taken: Attempt | None = None
    #: (key, node of the earlier writer) of each key an independent task wrote too.
    conflicts: tuple[tuple[Any, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Raised:
    attempt: Attempt
    exception: BaseException
    #: The retry policy's ``retry_on`` accepts it (judged on the task's thread).
    retryable: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Invalid:
    attempt: Attempt
    value: Any
    #: Why the value cannot be merged, when it is not simply "not a mapping".
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeadlinePassed:
    attempt: Attempt


@dataclasses.dataclass(frozen=True, slots=True)
class JobDeadlinePassed:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class RetryDue:
    node: int
    attempt: int


@dataclasses.dataclass(frozen=True, slots=True)
class KillDue:
    """``kill_after`` seconds past an attempt's abandon: stop it if it still runs."""

    attempt: Attempt


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatCheck:
    attempt: Attempt


@dataclasses.dataclass(frozen=True, slots=True)
class CodeReturned:
    """An abandoned attempt's code returned (or raised) at last."""

    attempt: Attempt


@dataclasses.dataclass(frozen=True, slots=True)
class CancelJob:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class ActorLost:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class InternalFailure:
    where: str
    exception: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class EventBatch:
    events: tuple[Event, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CacheHit:
    """A caching task's recorded output may be reused (``_cache.py``); merged already."""

    node: int
    output: Mapping[Any, Any]
    conflicts: tuple[tuple[Any, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CacheMiss:
    """A caching task must run."""

    node: int
