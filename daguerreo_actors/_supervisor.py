"""The supervisor: one actor for the whole process, owning every job's timers.

A pykka ThreadingActor on a daemon thread, started when a job first arms a
timer (a task deadline, the job's deadline) and stopped after
``IDLE_TIMEOUT`` seconds with none left, so a process that runs no timed
job holds no thread of ours. It is kept off the success path: a job whose
tasks have no timeout never talks to it.

Messages in: ``_Arm(timer)`` (from any job, through its
:class:`SupervisedTimers`) and ``_Drop(group)`` when a job ends, so the
timers of a finished job never keep the supervisor alive.

Timers without polling: the inbox is a queue whose ``get`` blocks only until
the earliest timer, then hands the actor loop a synthetic ``_Wake``. A due
timer's callback is engine code that only ``tell``s a job's mailbox (which
drains on the shared pool, never here), so no job can delay another's
deadline.

If the supervisor is stopped from outside (``pykka.ActorRegistry.stop_all()``,
by the application or by pykka itself), every job with a pending timer is
told through its group's ``lost`` callback, and ends instead of waiting for
a deadline that would never come; the next timer starts a new supervisor.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, cast

import pykka

from daguerreo_actors._clock import real_monotonic

#: Seconds the supervisor stays up with no timer left.
IDLE_TIMEOUT = 1.0

# Far below threading.TIMEOUT_MAX and any time_t limit.
_MAX_WAIT = 3600.0


class _Timer:
    __slots__ = ("callback", "cancelled", "group", "when")

    def __init__(self, when: float, callback: Callable[[], None], group: SupervisedTimers):
        self.when = when
        self.callback = callback
        self.group = group
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SupervisedTimers:
    """The timers of one job on the shared supervisor (a ``TimerGroup``)."""

    __slots__ = ("_armed", "_lost", "closed")

    def __init__(self, lost: Callable[[str], None]) -> None:
        self._lost = lost
        self._armed = False
        self.closed = False

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback, self)
        self._armed = True
        _arm(_Arm(timer))
        return timer

    def close(self) -> None:
        """The job ended: drop its timers (none of them fires any more)."""
        self.closed = True
        if self._armed:
            _arm(_Drop(self), start=False)

    def lost(self, reason: str) -> None:
        if not self.closed:
            self._lost(reason)


@dataclasses.dataclass(frozen=True, slots=True)
class _Arm:
    timer: _Timer


@dataclasses.dataclass(frozen=True, slots=True)
class _Drop:
    group: SupervisedTimers


@dataclasses.dataclass(frozen=True, slots=True)
class _Wake:
    """The synthetic message of a due timer (or of the idle timeout)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _RetireIfIdle:
    """Stop now if no timer is pending (leak checks, without the idle wait)."""


class _Envelope(NamedTuple):
    # The two attributes pykka's actor loop reads from an envelope.
    message: Any
    reply_to: None = None


_WAKE = _Envelope(_Wake())


class _TimerInbox:
    """An actor inbox whose ``get`` returns ``_WAKE`` at ``deadline``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.deadline: float | None = None

    def put(self, envelope: Any, /) -> None:
        self._queue.put(envelope)

    def get(self) -> Any:
        deadline = self.deadline
        if deadline is None:
            return self._queue.get()
        remaining = deadline - real_monotonic()
        try:
            # Queued messages first, even past the deadline: pykka drains
            # the inbox with ``while not empty(): get()`` when stopping.
            if remaining <= 0:
                return self._queue.get_nowait()
            # Capped: a wake-up with nothing due just re-arms.
            return self._queue.get(timeout=min(remaining, _MAX_WAIT))
        except queue.Empty:
            return _WAKE

    def empty(self) -> bool:
        return self._queue.empty()


class Supervisor(pykka.ThreadingActor):
    """Every job's timers; see the module docstring."""

    use_daemon_thread: ClassVar[bool] = True

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT) -> None:
        super().__init__()
        self._idle_timeout = idle_timeout
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._inbox = cast(_TimerInbox, self.actor_inbox)
        self._retiring = False
        # When the last timer went (None while timers are pending).
        self._idle_since: float | None = None
        self._rearm()

    @staticmethod
    def _create_actor_inbox() -> _TimerInbox:
        return _TimerInbox()

    def on_receive(self, message: Any) -> None:
        kind = type(message)
        if kind is _Arm:
            timer = message.timer
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        elif kind is _Drop:
            group = message.group
            kept = [entry for entry in self._heap if entry[2].group is not group]
            if len(kept) != len(self._heap):
                heapq.heapify(kept)
                self._heap = kept
        elif kind is _Wake:
            self._fire()
        elif kind is _RetireIfIdle:
            self._rearm()
            if not self._heap:
                self._retire()
            return
        self._rearm()

    def _fire(self) -> None:
        now = real_monotonic()
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled or timer.group.closed:
                continue
            try:
                timer.callback()
            except BaseException:  # noqa: BLE001 - engine code; never let one job break the rest
                timer.group.lost("a timer callback raised")
        idle_since = self._idle_since
        if not heap and idle_since is not None and now >= idle_since + self._idle_timeout:
            self._retire()

    def _rearm(self) -> None:
        heap = self._heap
        # Timers of ended jobs are dropped lazily; skip them here so they
        # never hold the next wake-up.
        while heap and (heap[0][2].cancelled or heap[0][2].group.closed):
            heapq.heappop(heap)
        if heap:
            self._inbox.deadline = heap[0][0]
            self._idle_since = None
        elif not self._retiring:
            if self._idle_since is None:
                self._idle_since = real_monotonic()
            self._inbox.deadline = self._idle_since + self._idle_timeout

    def _retire(self) -> None:
        with _lock:
            if not self._inbox.empty() or _state.current is not self.actor_ref:
                return
            _state.current = None
            self._retiring = True
        self._inbox.deadline = None
        self.actor_ref.stop(block=False)

    def on_stop(self) -> None:
        if self._retiring:
            return
        # Stopped from outside: no pending timer will fire. Tell their jobs.
        with _lock:
            if _state.current is self.actor_ref:
                _state.current = None
        groups = {id(entry[2].group): entry[2].group for entry in self._heap}
        while not self._inbox.empty():  # arms that raced the stop
            envelope = self._inbox.get()
            message = getattr(envelope, "message", None)
            if type(message) is _Arm:
                groups[id(message.timer.group)] = message.timer.group
        self._heap.clear()
        for group in groups.values():
            try:
                group.lost("the supervisor actor was stopped from outside (pykka stop_all?)")
            except BaseException:  # noqa: BLE001 - tell every job, whatever one does
                pass


class _State:
    current: pykka.ActorRef[Supervisor] | None = None


_state = _State()
_lock = threading.Lock()


def _arm(message: _Arm | _Drop, *, start: bool = True) -> None:
    """Tell the running supervisor, starting one if needed (and ``start``)."""
    for _ in range(3):
        with _lock:
            ref = _state.current
            if ref is None:
                if not start:
                    return
                ref = _state.current = Supervisor.start()
            try:
                ref.tell(message)
                return
            except pykka.ActorDeadError:
                _state.current = None
    raise RuntimeError("the supervisor could not be started")  # pragma: no cover


def retire_idle() -> bool:
    """Stop the supervisor now if it has no timer; for leak checks. True if stopped."""
    with _lock:
        ref = _state.current
    if ref is None:
        return False
    try:
        ref.tell(_RetireIfIdle())
    except pykka.ActorDeadError:
        return False
    return True


def running() -> bool:
    """True while a supervisor actor is up."""
    ref = _state.current
    return ref is not None and ref.is_alive()


def _forget_after_fork() -> None:
    # A forked child inherits the reference but not the actor's thread.
    global _lock
    _state.current = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
