"""An ETL job: fetch from two APIs, combine, transform, write to a queue and a database.

The I/O is simulated with short sleeps. The users API fails on its first
call and succeeds on the retry; the database write polls ``is_active()``
between batches, as long-running task code should, so a cancel or a
timeout stops it between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

import daguerreo_actors as d

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


class FlakyUsersApi:
    """Times out on the first call, like a real API on a bad day."""

    def __init__(self) -> None:
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self, _ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        with self._lock:
            self._calls += 1
            first = self._calls == 1
        time.sleep(0.02)
        if first:
            raise ConnectionError("users API: connection reset (will be retried)")
        return {"users": [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]}


def fetch_orders(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    time.sleep(0.03)
    return {"orders": [{"user": 1, "total": 30}, {"user": 2, "total": 12}, {"user": 1, "total": 5}]}


def combine(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    names = {user["id"]: user["name"] for user in ctx["users"]}
    return {"rows": [{"name": names[o["user"]], "total": o["total"]} for o in ctx["orders"]]}


def transform(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for row in ctx["rows"]:
        totals[row["name"]] = totals.get(row["name"], 0) + row["total"]
    return {"totals": totals}


def write_queue(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    time.sleep(0.01)
    return {"queued": len(ctx["totals"])}


def write_database(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
    written = 0
    for _name in ctx["totals"]:
        if not is_active():  # cancelled or timed out: stop between batches
            break
        time.sleep(0.01)
        written += 1
    return {"db_rows": written}


def tasks() -> list[d.Task]:
    return [
        d.Task("fetch-users", FlakyUsersApi(), timeout=1.0, max_retries=2),
        d.Task("fetch-orders", fetch_orders, timeout=1.0),
        d.Task("combine", combine, dependencies=["fetch-users", "fetch-orders"]),
        d.Task("transform", transform, dependencies=["combine"]),
        d.Task("write-queue", write_queue, dependencies=["transform"]),
        d.Task("write-database", write_database, dependencies=["transform"], timeout=2.0),
    ]


def print_event(event: d.Event) -> None:
    if isinstance(event, d.TaskEvent):
        extra = f"  ({event.exception})" if event.exception is not None else ""
        print(f"{event.task} > {event.old_state} -> {event.new_state} #{event.attempt}{extra}")
    else:
        print(f"JOB > {event.old_state} -> {event.new_state}")


def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    job = d.run(tasks(), timeout=10.0, max_concurrency=4, listeners=[print_event])
    result = job.get(timeout=15.0)
    job.wait_for_listeners(timeout=5.0)
    print(f"\nstate: {result.state}, attempts: {dict(result.attempts)}")
    print(
        f"totals: {result.ctx.get('totals')}, queued: {result.ctx.get('queued')}, "
        f"db rows: {result.ctx.get('db_rows')}"
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
