"""What a mapped task's child runs: its parent's function, with its item in the ctx.

Kept apart from the shell (``_map_shell.py``) so the TaskActor, which checks
a child's output on the child's own thread, can import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import immutables

from daguerreo_actors._text import cut, safe_repr

if TYPE_CHECKING:
    from daguerreo_actors._task import TaskFn

#: The default ``run(max_map=...)``: the most items one mapped task runs.
DEFAULT_MAX_MAP = 100_000

#: A child's name, ``task[i]``: group 1 its parent's, group 2 its index.
CHILD_NAME = re.compile(r"(.+)\[(\d+)\]")


def child_name(parent: str, index: int) -> str:
    """The name of a mapped task's child (matches :data:`CHILD_NAME`)."""
    return f"{parent}[{index}]"


class MapChild:
    """A mapped task's function for one item: ``fn`` with ``ctx[key] = item``.

    Picklable when ``fn`` and ``item`` are, so children run on every tier.
    """

    __slots__ = ("fn", "item", "key")

    def __init__(self, fn: TaskFn, key: str, item: Any) -> None:
        self.fn = fn
        self.key = key
        self.item = item

    def __call__(self, ctx: Mapping[Any, Any], is_active: Callable[..., bool]) -> Any:
        if isinstance(ctx, immutables.Map):
            given: Mapping[Any, Any] = ctx.set(self.key, self.item)
        else:
            given = {**ctx, self.key: self.item}
        return self.fn(given, is_active)

    def __reduce__(self) -> tuple[Any, ...]:
        return (MapChild, (self.fn, self.key, self.item))


def child_output_error(task: str, output: Mapping[Any, Any]) -> str | None:
    """Why a child's output cannot be collected (a key that is not a str), or None."""
    for key in output:
        if type(key) is not str:
            return (
                f"task {task!r}: a mapped task's child must return str keys (they "
                f"become the keys of the collected lists), got {cut(safe_repr(key), 100)}"
            )
    return None
