"""Task functions for the process and dask tiers: module-level, so they pickle."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


def inc(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"v": ctx["v"] + 1}


def pid(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"pid": os.getpid()}


def loop_until_inactive(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
    """Loops while wanted; then writes the time it noticed to ctx['marker']."""
    deadline = time.monotonic() + 30
    while is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(ctx["marker"]).write_text(str(time.time()))
    return {"stopped": True}


def unpicklable_result(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"fine": 1, "lock": threading.Lock()}


def die_once(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """Kills its worker process the first time (a marker file remembers)."""
    marker = Path(ctx["marker"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return {"survived": True}


def sleep_then_return(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    time.sleep(ctx.get("sleep", 0.05))
    return {"slept": True}


def nested_job(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """Runs a whole job inside a (forked) worker process."""
    import daguerreo_actors as d

    result = d.run([d.Task("inner", inc)], ctx={"v": 41}).get(timeout=10)
    return {"inner": result.ctx["v"]}


class SlowToPickle:
    """A ctx value that takes ``seconds`` to pickle; it notes when it was last pickled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.pickled_at: float | None = None  # time.monotonic(), in the pickling process

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(self.seconds)
        self.pickled_at = time.monotonic()
        return (SlowToPickle, (self.seconds,))


_kept: list[Callable[[], bool]] = []


def keeps_is_active(_ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
    """Keeps the attempt's ``is_active`` in the worker, for a later call."""
    _kept.append(is_active)
    return {"kept": is_active()}


def call_kept_is_active() -> bool:
    """In the same worker, after the task returned: what ``is_active()`` says now."""
    return _kept[-1]()


class HoldsALock(Exception):  # noqa: N818 - like an HTTPError holding its socket
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message, threading.Lock())


class NeedsTwoArguments(Exception):  # noqa: N818
    """Pickles, but cannot be unpickled (its __init__ wants two arguments)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


def raises_unpicklable(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise HoldsALock("503 Service Unavailable")


def raises_unloadable(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise NeedsTwoArguments(503, "warming up")


def raises_value_error(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise ValueError("plain and picklable")


def raise_remote() -> None:
    from daguerreo_actors._errors import RemoteTaskError

    raise RemoteTaskError("a", "b", "c")


def stuck_first_attempt(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """The first attempt (no marker yet) hangs for good; the next one returns."""
    marker = Path(ctx["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(1000)
    return {"pid": os.getpid()}


def exits_first_attempt(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """The first attempt kills its own worker process; the next one returns."""
    marker = Path(ctx["marker"])
    if not marker.exists():
        marker.write_text("exited")
        os._exit(3)
    return {"survived": True}


def square(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"square": ctx["n"] ** 2, "pid": os.getpid()}


def poll_for(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
    """Polls is_active() every 50 ms for ctx['seconds'] (alive by its heartbeat)."""
    deadline = time.monotonic() + ctx["seconds"]
    while time.monotonic() < deadline:
        is_active()
        time.sleep(0.05)
    return {"polled": True}


def sleep_then_mark(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """Ignores is_active(): sleeps ctx['sleep'] seconds, then writes ctx['marker']."""
    time.sleep(ctx["sleep"])
    Path(ctx["marker"]).write_text("returned")
    return {"returned": True}


def _unpoison(data: bytes) -> Poison:
    import distributed

    distributed.get_worker()  # raises ValueError outside a worker: the client
    return Poison(data)


class Poison:
    """A value that unpickles only on a Dask worker: the client must never receive it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        return (_unpoison, (self.data,))


def make_big(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"big": Poison(b"x" * ctx["size"])}


def measure_big(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"measured": len(ctx["big"].data)}


def add_kb(name: str, ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    """Adds a 1 KB key named for the task; checks its dependencies' keys are there."""
    for dep in ctx.get("deps", {}).get(name, ()):
        assert len(ctx[dep]) == 1024, dep
    return {name: b"k" * 1024}


def count_keys(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {f"seen-{len(ctx)}": len(ctx)}


def items(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"items": [1, 2, 3], "other": b"not fetched"}


def double_item(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"doubled": ctx["item"] * 2}


def not_a_mapping(_ctx: Ctx, _is_active: IsActive) -> Any:
    return [1, 2]
