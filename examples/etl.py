"""An ETL job as plain functions: fetch users and the order pages, combine, transform, write.

A :class:`daguerreo_actors.Dag`: each function's parameters are its inputs
(another task's output, or the initial ctx), its return value its output;
the dependencies follow. The order pages are known only at run time: the
``pages`` task lists them and ``fetch_orders`` maps over that list, one
child task per page, in parallel. The I/O is simulated with short sleeps.
The users API fails on its first call and succeeds on the retry; the
database write polls ``is_active()`` between batches, as long-running task
code should, so a cancel or a timeout stops it between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

import daguerreo_actors as d

dag = d.Dag()
_calls = 0
_lock = threading.Lock()


@dag.task(name="fetch-users", timeout=1.0, max_retries=2)
def users(users_api: str) -> list[dict[str, Any]]:
    """Fails on the first call, like a real API on a bad day."""
    global _calls
    with _lock:
        _calls += 1
        first = _calls == 1
    time.sleep(0.02)
    if first:
        raise ConnectionError(f"{users_api}: connection reset (will be retried)")
    return [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]


@dag.task
def pages(orders_api: str) -> list[str]:
    return [f"{orders_api}?page={n}" for n in (1, 2, 3)]


_PAGES = {
    "1": [{"user": 1, "total": 30}],
    "2": [{"user": 2, "total": 12}],
    "3": [{"user": 1, "total": 5}],
}


@dag.task(map_over="pages", map_as="page", timeout=1.0)
def fetch_orders(page: str) -> list[dict[str, Any]]:
    time.sleep(0.03)
    return _PAGES[page.rsplit("=", 1)[1]]


@dag.task
def rows(users: list[dict[str, Any]], fetch_orders: list[list[dict[str, Any]]]) -> list[Any]:
    names = {user["id"]: user["name"] for user in users}
    orders = [order for page in fetch_orders for order in page]
    return [{"name": names[o["user"]], "total": o["total"]} for o in orders]


@dag.task
def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    summed: dict[str, int] = {}
    for row in rows:
        summed[row["name"]] = summed.get(row["name"], 0) + row["total"]
    return summed


@dag.task(name="write-queue")
def queued(totals: dict[str, int]) -> int:
    time.sleep(0.01)
    return len(totals)


@dag.task(name="write-database", timeout=2.0)
def db_rows(totals: dict[str, int], is_active: Callable[[], bool]) -> int:
    written = 0
    for _name in totals:
        if not is_active():  # cancelled or timed out: stop between batches
            break
        time.sleep(0.01)
        written += 1
    return written


def print_event(event: d.Event) -> None:
    if isinstance(event, d.TaskEvent):
        extra = f"  ({event.exception})" if event.exception is not None else ""
        print(f"{event.task} > {event.old_state} -> {event.new_state} #{event.attempt}{extra}")
    else:
        print(f"JOB > {event.old_state} -> {event.new_state}")


def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    job = dag.run(
        ctx={"users_api": "https://users.example", "orders_api": "https://orders.example"},
        timeout=10.0,
        max_concurrency=4,
        listeners=[print_event],
    )
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
