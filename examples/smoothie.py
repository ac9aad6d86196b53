"""Make a smoothie: the example from Daguerreo's README, on daguerreo_actors.

Dice the banana and the mango in parallel, blend them with the liquids, then
garnish. The garnish is optional (continue_on_failure): if it failed, the
job would still complete. Prints every transition, then the final ctx.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import structlog

import daguerreo_actors as d

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


def dice(fruit: str) -> str:
    """Chop it up."""
    return "".join(random.sample(fruit, len(fruit)))


def dice_banana(ctx: Ctx, _is_active: IsActive) -> dict[str, str]:
    return {"diced_banana": dice(ctx["fruit"]["banana"])}


def dice_mango(ctx: Ctx, _is_active: IsActive) -> dict[str, str]:
    return {"diced_mango": dice(ctx["fruit"]["mango"])}


def blend(ctx: Ctx, _is_active: IsActive) -> dict[str, str]:
    parts = [ctx["diced_banana"], ctx["diced_mango"], *ctx["liquids"].values()]
    return {"smoothie": dice("".join(parts))}


def garnish(ctx: Ctx, _is_active: IsActive) -> dict[str, str]:
    return {"smoothie": "sugar + " + ctx["smoothie"]}


TASKS = [
    d.Task("dice-banana", dice_banana),
    d.Task("dice-mango", dice_mango),
    d.Task("blend", blend, dependencies=["dice-banana", "dice-mango"]),
    d.Task("garnish", garnish, dependencies=["blend"], continue_on_failure=True),
]

CTX = {
    "fruit": {"banana": "banana", "mango": "mango"},
    "liquids": {"coconut-milk": "coconut-milk", "water": "water"},
}


def print_event(event: d.Event) -> None:
    """Daguerreo-style lines: `JOB > idle -> running`, `blend > ready -> running`."""
    who = event.task if isinstance(event, d.TaskEvent) else "JOB"
    print(f"{who} > {event.old_state} -> {event.new_state}")


def main() -> int:
    # An application decides how logs look; here: warnings and above only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    job = d.run(TASKS, ctx=CTX, timeout=3.0, listeners=[print_event])
    result = job.get(timeout=10.0)
    job.wait_for_listeners(timeout=10.0)
    print(f"\nstate: {result.state}")
    for key, value in result.ctx.items():
        print(f"  {key}: {value!r}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
