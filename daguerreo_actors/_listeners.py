"""Listener proxies: one small actor per listener, so none can stall the job.

The JobActor never calls a listener. For each listener it starts a
``ListenerProxy`` (a pykka ThreadingActor on a daemon thread) and tells it
one ``EventBatch`` per message the JobActor handled, in the order it made
the events. The proxy calls the listener (a callable) or ``tell``s each
event on (a ``pykka.ActorRef``):

- a listener that raises (anything, BaseException included) is logged with
  the exception and keeps receiving events;
- a listener that works hard delays the job as little as the GIL allows:
  its proxy lets the other threads have the GIL (``time.sleep(0)``) after
  every :data:`GIL_SLICE` of listener work, so the job's threads, which
  wake often for a little work each, do not wait out the interpreter's 5 ms
  switch interval behind it (10k wide with a TracingListener, the job took
  about 200 µs per task without the yield, 95 with it: docs/benchmarks.md);
- a listener that blocks delays only its own proxy. Its backlog (events
  sent to the proxy and not yet consumed) is bounded by
  :data:`LISTENER_BACKLOG_LIMIT`: past it, further events for that listener
  are dropped, newest first, until it catches up, except the job's final
  JobEvent, which is always delivered. Drops are counted per listener
  (``Job.dropped_events``) and logged as a warning ``listener_events_dropped``
  (once when dropping starts, once with the total when the job ends);
- an ActorRef listener whose actor has stopped is detached (logged once).

A listener object with a ``job_starting`` method is first given the job's
:class:`JobInfo` by :func:`announce`, on ``run()``'s thread, before any
event; what it raises (an Exception) is logged as ``listener_failed`` and
the job goes on.

After the job's last event the JobActor releases each proxy's
:class:`ListenerLink`: a stop message queued behind the events, so the proxy
lives exactly until its listener has consumed the job's events; ``done`` is
then set (see ``Job.wait_for_listeners``). A proxy stopped by anyone else
(``pykka.ActorRegistry.stop_all()``) tells the job through ``lost``, and the
job ends CANCELLED instead of waiting on a listener that is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pykka

from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._events import Event, JobInfo
from daguerreo_actors._logging import log_outside
from daguerreo_actors._messages import EventBatch
from daguerreo_actors._text import cut, safe_repr

Listener = Callable[[Event], Any] | pykka.ActorRef[Any]

#: Events a listener may be behind before further events are dropped.
LISTENER_BACKLOG_LIMIT = 100_000

#: Seconds of listener work after which its proxy yields the GIL.
GIL_SLICE = 0.0001


def is_listener(value: object) -> bool:
    return isinstance(value, pykka.ActorRef) or callable(value)


class Backlog:
    """Events sent to one listener's proxy and not consumed yet, and drops."""

    __slots__ = ("_lock", "dropped", "limit", "pending")

    def __init__(self, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self.limit = LISTENER_BACKLOG_LIMIT if limit is None else limit
        self.pending = 0
        self.dropped = 0

    def admit(self, count: int, forced: int = 0) -> int:
        """How many of ``count`` events may be sent; the rest are dropped.

        ``forced`` more are sent whatever the backlog (the final JobEvent).
        """
        with self._lock:
            room = max(0, self.limit - self.pending)
            admitted = min(count, room)
            self.pending += admitted + forced
            self.dropped += count - admitted
            return admitted

    def consumed(self, count: int) -> None:
        with self._lock:
            self.pending -= count


class ListenerLink:
    """The JobActor's end of one listener's proxy."""

    __slots__ = ("backlog", "done", "position", "ref", "released")

    def __init__(self, position: int) -> None:
        self.position = position
        self.backlog = Backlog()
        self.done = threading.Event()
        self.ref: pykka.ActorRef[Any] | None = None
        #: Set before the JobActor stops the proxy: a stop without it came from outside.
        self.released = False

    def send(self, batch: EventBatch, count: int) -> None:
        ref = self.ref
        try:
            if ref is None:
                raise pykka.ActorDeadError("never started")
            ref.tell(batch)
        except pykka.ActorDeadError:
            self.backlog.consumed(count)

    def release(self) -> None:
        """Stop the proxy once its listener has consumed every event sent."""
        self.released = True
        ref = self.ref
        if ref is None:
            self.done.set()
            return
        try:
            ref.stop(block=False)
        except pykka.ActorDeadError:
            self.done.set()


def announce(listeners: Sequence[Listener], job_id: str, info: Callable[[], JobInfo]) -> None:
    """Call each listener's ``job_starting(info)``; ``info`` is built only if one has it."""
    built: JobInfo | None = None
    for position, listener in enumerate(listeners):
        if isinstance(listener, pykka.ActorRef):
            continue
        try:
            hook = getattr(listener, "job_starting", None)
            if not callable(hook):
                continue
            if built is None:
                built = info()
            hook(built)
        # A hook never takes the job down; a BaseException (Ctrl-C) goes to
        # run()'s caller, which then starts nothing.
        except Exception as exc:  # noqa: BLE001
            log_outside(
                logging.ERROR,
                "listener_failed",
                job_id=job_id,
                listener=f"#{position} job_starting",
                exc=exc,
            )


def start_listeners(
    listeners: Sequence[Listener], job_id: str, lost: Callable[[str], None]
) -> list[ListenerLink]:
    """One started proxy per listener; on failure, stops those already started."""
    links = [ListenerLink(position) for position in range(len(listeners))]
    try:
        for link, listener in zip(links, listeners, strict=True):
            link.ref = ListenerProxy.start(listener, job_id, link, lost)
    except BaseException:
        for link in links:
            link.release()
        raise
    return links


class ListenerProxy(pykka.ThreadingActor):
    """Delivers one job's events to one listener."""

    use_daemon_thread: ClassVar[bool] = True

    def __init__(
        self,
        listener: Listener,
        job_id: str,
        link: ListenerLink,
        lost: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._listener = listener
        self._job_id = job_id
        self._link = link
        self._done = link.done
        self._backlog = link.backlog
        self._lost = lost
        self._detached = False
        # Taken once, safely: a listener's __repr__ is user code too.
        self._name = cut(safe_repr(listener), 200)

    def on_receive(self, message: Any) -> None:
        if type(message) is not EventBatch:
            return
        try:
            self._deliver(message.events)
        except BaseException:  # noqa: BLE001 - never die (pykka would stop_all on this)
            pass
        finally:
            self._backlog.consumed(len(message.events))

    def _deliver(self, events: tuple[Event, ...]) -> None:
        listener = self._listener
        if isinstance(listener, pykka.ActorRef):
            self._forward(listener, events)
            return
        yield_at = real_monotonic() + GIL_SLICE
        for event in events:
            try:
                listener(event)
            except BaseException as exc:  # noqa: BLE001 - a listener never takes us down
                log_outside(
                    logging.ERROR,
                    "listener_failed",
                    job_id=self._job_id,
                    listener=self._name,
                    exc=exc,
                )
            if real_monotonic() >= yield_at:
                time.sleep(0)  # the GIL to the job's threads, if they wait for it
                yield_at = real_monotonic() + GIL_SLICE

    def _forward(self, ref: pykka.ActorRef[Any], events: tuple[Event, ...]) -> None:
        if self._detached:
            return
        for event in events:
            try:
                ref.tell(event)
            except pykka.ActorDeadError:
                self._detached = True
                log_outside(
                    logging.WARNING,
                    "listener_detached",
                    job_id=self._job_id,
                    listener=self._name,
                    reason="its actor has stopped",
                )
                return

    def on_stop(self) -> None:
        self._done.set()
        if not self._link.released:
            try:
                self._lost(f"the proxy actor of listener #{self._link.position} was stopped")
            except BaseException:  # noqa: BLE001 - never die (pykka would stop_all on this)
                pass

    def on_failure(self, *_exc_info: object) -> None:  # pragma: no cover - on_receive catches
        self._done.set()
