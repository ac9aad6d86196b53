"""``run()``: check the options and the tasks, start the JobActor, return the Job.

Everything is checked before any actor starts, so a bad call raises in the
caller's thread and leaves nothing behind. ``run()`` then starts the
listeners' proxies, makes the JobActor (which makes its Job) and starts it:
the roots' READY transitions and the first attempts' hand-over to the pool
happen right here, so a small job costs no thread hand-off before its first
task runs. No task code ever runs on the caller's thread.
"""

from __future__ import annotations

import decimal
import importlib.util
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

from daguerreo_actors._clock import REAL_CLOCK, new_job_id
from daguerreo_actors._ctx import ON_CONFLICT
from daguerreo_actors._job import Job
from daguerreo_actors._job_actor import JobActor
from daguerreo_actors._listeners import Listener, is_listener, start_listeners
from daguerreo_actors._logging import TransitionLog
from daguerreo_actors._task import Task, is_positive_seconds, to_seconds
from daguerreo_actors._tiers import DaskClient, is_dask_client
from daguerreo_actors._validation import build_graph

#: The default ``max_concurrency``: one running task per CPU.
DEFAULT_MAX_CONCURRENCY: int = os.cpu_count() or 1


def run(
    tasks: Iterable[Task | Mapping[str, Any]],
    *,
    ctx: Mapping[Any, Any] | None = None,
    timeout: float | None = None,
    max_retries: int = 5,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    executor: Executor | DaskClient | None = None,
    listeners: Iterable[Listener] = (),
    log_values: bool = False,
    on_conflict: str = "warn",
) -> Job:
    """Start running ``tasks``; return the :class:`Job` at once.

    ``ctx`` is the initial context; ``timeout`` the whole job's, in seconds,
    counted from this call (None or inf: none); ``max_retries`` the retries
    per task after a failure, unless the task sets its own;
    ``max_concurrency`` the most tasks RUNNING at once; ``executor`` where
    task functions run: a ``concurrent.futures.Executor`` (threads, or a
    ``ProcessPoolExecutor``), a ``distributed.Client``, or None for the
    engine's own pool of threads (coroutine functions always run on the
    engine's event loop); ``listeners`` callables taking one event,
    or pykka ActorRefs that events are told to; ``log_values`` puts result
    values in the structured log entries (by default only their keys: values
    may hold secrets); ``on_conflict`` says what a ctx key written by two
    tasks neither of which depends on the other does: ``"warn"`` (the
    default: logged as ``ctx_key_conflict`` and listed in
    ``JobResult.conflicts``, the later value kept), ``"error"`` (the second
    writer's result is INVALID_RESULT) or ``"ignore"``.

    Raises :class:`InvalidTasksError` listing every problem in ``tasks``,
    TypeError or ValueError for a bad option.
    """
    clock = REAL_CLOCK
    started = clock.monotonic()
    if timeout is not None and not is_positive_seconds(timeout):
        raise _option_error("timeout", timeout, "None or a number of seconds > 0 (inf for none)")
    if type(max_retries) is bool or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if type(max_concurrency) is bool or not isinstance(max_concurrency, int):
        raise TypeError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
    if ctx is not None and not isinstance(ctx, Mapping):
        raise TypeError(f"ctx must be a mapping or None, got {type(ctx).__name__}")
    if executor is not None and not isinstance(executor, Executor):
        if not is_dask_client(executor):
            raise TypeError(
                "executor must be a concurrent.futures.Executor, a distributed.Client "
                f"or None, got {type(executor).__name__}"
            )
        if importlib.util.find_spec("distributed") is None:
            raise ImportError(
                "running on a dask cluster needs the dask extra: "
                "pip install 'daguerreo-actors[dask]'"
            )
    if not isinstance(on_conflict, str):
        raise TypeError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    if not isinstance(log_values, bool):
        raise TypeError(f"log_values must be a bool, got {type(log_values).__name__}")
    if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Iterable):
        raise TypeError(
            "listeners must be an iterable of callables or pykka ActorRefs, "
            f"got {type(listeners).__name__}"
        )
    listener_list = list(listeners)
    for position, listener in enumerate(listener_list):
        if not is_listener(listener):
            raise TypeError(
                f"listener #{position} must be a callable taking one event or a "
                f"pykka ActorRef, got {type(listener).__name__}"
            )

    task_tuple, graph = build_graph(tasks)

    job_deadline = None
    if timeout is not None:
        seconds = to_seconds(timeout)
        if not math.isinf(seconds):
            job_deadline = started + seconds
    job_id = new_job_id()
    log = TransitionLog(job_id, log_values=log_values)
    holder: list[JobActor] = []
    links = start_listeners(listener_list, job_id, lambda reason: holder[0].listener_lost(reason))
    try:
        actor = JobActor(
            job_id,
            task_tuple,
            graph,
            ctx={} if ctx is None else dict(ctx),
            clock=clock,
            job_deadline=job_deadline,
            run_started=started,
            log=log,
            links=links,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            executor=executor,
            on_conflict=on_conflict,
        )
    except BaseException:
        for link in links:
            link.release()
        raise
    holder.append(actor)
    actor.start()
    return actor.job


def _option_error(name: str, value: object, expected: str) -> Exception:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | decimal.Decimal):
        return TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return ValueError(f"{name} must be {expected}, got {value!r}")
