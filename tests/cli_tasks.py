"""Task lists for the command line tests: ``daguerreo-actors run cli_tasks:ATTR``.

The tests put this directory on the subprocess's PYTHONPATH.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from daguerreo_actors import Task

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


def _sleepy(name: str, seconds: float) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        time.sleep(seconds)
        return {name: True}

    return fn


def _opaque(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"opaque": object(), "number": 42}


def _add(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"sum": ctx.get("start", 0) + 1}


def _boom(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    raise ValueError("boom\x1b[2J")


def _spin(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
    """Loop until the job is cancelled or times out; touch ctx["marker"] once running."""
    marker = ctx.get("marker")
    if marker:
        Path(marker).write_text("running")
    deadline = time.monotonic() + 30
    while is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"spun": True}


def _big(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"blob": bytes(5 * 2**20), "items": list(range(200_000)), "name": "smoothie"}


def _odd(_ctx: Ctx, _is_active: IsActive) -> dict[Any, Any]:
    return {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), 1: "one", "ok": [1, 2]}


def _int_key(_ctx: Ctx, _is_active: IsActive) -> dict[Any, Any]:
    return {1: "one", "nested": [{2: "two"}], "ok": True}


def _returns_none(_ctx: Ctx, _is_active: IsActive) -> None:
    return None


def _returns_list(_ctx: Ctx, _is_active: IsActive) -> list[str]:
    return ["not", "a", "mapping"]


def _evil_value(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    class Sneaky:
        def __repr__(self) -> str:
            return "sneaky\x1b]0;title\x07\u202e"

    return {"text": "red\x1b[31m\u202eright\u009b", "sneaky": Sneaky()}


#: A diamond: root, then a slow and a fast branch, then the sink.
DIAMOND = [
    Task("root", _sleepy("root", 0.02)),
    Task("slow", _sleepy("slow", 0.3), dependencies=["root"]),
    Task("fast", _sleepy("fast", 0.02), dependencies=["root"]),
    Task("sink", _sleepy("sink", 0.02), dependencies=["slow", "fast"]),
]

#: Completes; one value is not JSON (printed as its repr).
OPAQUE = [Task("opaque", _opaque)]

#: Fails: "bad" raises on every attempt.
FAILING = [
    Task("fine", _add),
    Task("bad", _boom, dependencies=["fine"]),
]

#: Runs until cancelled or timed out.
SPINNER = [Task("spin", _spin)]

#: Three problems at once: a missing dependency, a cycle, a bad timeout.
INVALID: list[dict[str, Any]] = [
    {"name": "a", "fn": _add, "dependencies": ["nowhere"]},
    {"name": "b", "fn": _add, "dependencies": ["c"]},
    {"name": "c", "fn": _add, "dependencies": ["b"]},
    {"name": "d", "fn": _add, "timeout": -1},
]

#: A large ctx: 5 MB of bytes and a 200,000-item list.
BIG = [Task("big", _big)]

#: Values and keys JSON cannot hold: a datetime, an int key.
ODD = [Task("odd", _odd)]

#: Keys that are not strings, at the top and nested.
INT_KEY = [Task("int-key", _int_key)]

#: Fails with INVALID_RESULT: returns None, or a list.
RETURNS_NONE = [Task("returns-none", _returns_none)]  # type: ignore[arg-type]
RETURNS_LIST = [Task("returns-list", _returns_list)]  # type: ignore[arg-type]

#: Not a task list at all.
NOT_TASKS = 42

#: Names and values that try to reach the terminal raw.
EVIL_NAME = "evil\x1b[31m\u202e\r\x07name"
EVIL = [
    Task(EVIL_NAME, _evil_value),
    Task('quote"back\\slash', _add, dependencies=[EVIL_NAME]),
]


def needs_an_argument(size: int) -> list[Task]:
    """A factory the command line cannot call."""
    return [Task("one", _add)] * size


def make_tasks() -> list[Task]:
    """A zero-argument function returning a task list."""
    return [Task("one", _add), Task("two", _sleepy("two", 0.01), dependencies=["one"])]


def _flaky_until_fixed(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    import os

    if not os.environ.get("FIXED"):
        raise RuntimeError("not fixed yet")
    return {"fixed": True}


# Fails until FIXED is set in the environment: for run --journal, then resume.
RESUMABLE = [
    Task("first", _add),
    Task("flaky", _flaky_until_fixed, ["first"], max_retries=0),
]
