"""How a Dask worker tells the client what an attempt returned, without a round trip.

A finished attempt's output stays on its worker (``_dask_ctx.py``); the
client needs only what the engine needs: the output's keys (and values,
where they must come back). The worker sends them as an event on one
topic (``Worker.log_event``): it travels on the worker's and then the
client's batched streams, with the scheduler's other messages, and costs
no request of its own. Fetching each result with ``gather`` cost two
messages each way per task and was, with the submits, most of the client
process's time (bench/DESIGN.md).

One subscription per client (``subscribe_topic`` keeps one handler per
topic), shared by that client's jobs: the handler runs on the client's
event loop, finds the job's tier by id and gives it the event, which the
tier reports on a pool thread (``_tier_dask.py``). Events hold keys, never
values: the scheduler keeps each topic's last events.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Protocol

import distributed

#: The one topic of every job's events.
TOPIC = "daguerreo-actors"


class Receiver(Protocol):
    def received(self, name: str, payload: bytes) -> None:
        """On the client's event loop: cheap, never blocking."""
        ...


_lock = threading.Lock()
#: Per client id: its jobs' receivers, by job id.
_jobs: dict[str, dict[str, Receiver]] = {}


def subscribe(client: Any, job_id: str, receiver: Receiver) -> None:
    with _lock:
        jobs = _jobs.get(client.id)
        if jobs is None:
            jobs = _jobs[client.id] = {}
            client.subscribe_topic(TOPIC, lambda event: _dispatch(jobs, event))
        jobs[job_id] = receiver


def unsubscribe(client: Any, job_id: str) -> None:
    with _lock:
        jobs = _jobs.get(client.id)
        if jobs is not None:
            jobs.pop(job_id, None)


def _dispatch(jobs: dict[str, Receiver], event: Any) -> None:
    try:
        msg = event[1]
        receiver, name, payload = jobs.get(msg["job"]), msg["name"], msg["payload"]
    except (TypeError, KeyError, IndexError):  # not ours: another sender on the topic
        return
    if receiver is not None:
        receiver.received(name, payload)


def publish(job_id: str, name: str, kind: str, keys: Any = (), values: Any = None) -> None:
    """On the worker: the attempt ``name`` ended with ``kind``: "ok" (its keys, and the
    values asked for), "fetch" (the client fetches the value) or "not_run"."""
    payload = pickle.dumps((kind, keys, values), protocol=pickle.HIGHEST_PROTOCOL)
    distributed.get_worker().log_event(TOPIC, {"job": job_id, "name": name, "payload": payload})
