"""Make a smoothie: the example from Daguerreo's README, on daguerreo_actors.

Dice the banana and the mango in parallel, blend them with the liquids, then
garnish. The garnish is optional (continue_on_failure): if it failed, the
job would still complete. Prints every transition and a progress display on
one console (stdout), so neither garbles the other, then prints the final
ctx, writes the job's timeline picture (``build/smoothie-timeline.png``, or
the path given as the first argument) and, beside it, the job's report page
(``smoothie-report.html``: open it in a browser).
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

import daguerreo_actors as d

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


def dice(fruit: str) -> str:
    """Chop it up (slowly enough to watch)."""
    time.sleep(0.1)
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


def main(argv: list[str]) -> int:
    # An application decides how logs look; here: warnings and above only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    timeline = Path(argv[0]) if argv else Path("build") / "smoothie-timeline.png"
    report = d.JobReport(TASKS)
    # One console for the progress display and the transition lines: each
    # line is printed above the live display instead of through it. And one
    # listener for both, so they advance together (two listeners would each
    # run on an actor of its own, in no set order between them).
    progress = d.ProgressListener(len(TASKS), console=Console(), description="smoothie")
    log = d.event_logger(print_fn=progress.print)

    def show(event: d.Event) -> None:
        log(event)
        progress(event)

    job = d.run(TASKS, ctx=CTX, timeout=3.0, listeners=[show, report], name="smoothie")
    result = job.get(timeout=10.0)
    job.wait_for_listeners(timeout=10.0)
    print(f"\nstate: {result.state}")
    for key, value in result.ctx.items():
        print(f"  {key}: {value!r}")
    print(f"critical path: {' -> '.join(report.critical_path)}")
    try:
        written = report.save_timeline(timeline)
    except ImportError as exc:  # matplotlib is the optional [plot] extra
        print(f"no timeline: {exc}")
    else:
        print(f"timeline written to {written}")
    page = report.save_html(timeline.parent / "smoothie-report.html")
    print(f"report page written to {page}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
