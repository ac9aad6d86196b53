"""``run()``: check the options and the tasks, start the JobActor, return the Job.

Everything is checked before any actor starts, so a bad call raises in the
caller's thread and leaves nothing behind. ``run()`` then starts the
listeners' proxies, makes the JobActor (which makes its Job) and starts it:
the roots' READY transitions and the first attempts' hand-over to the pool
happen right here, so a small job costs no thread hand-off before its first
task runs. No task code ever runs on the caller's thread.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from daguerreo_actors._clock import REAL_CLOCK, Clock, new_job_id
from daguerreo_actors._errors import InvalidTasksError
from daguerreo_actors._events import JobInfo
from daguerreo_actors._job import Job
from daguerreo_actors._job_actor import JobActor
from daguerreo_actors._listeners import Listener, announce, is_listener, start_listeners
from daguerreo_actors._logging import TransitionLog
from daguerreo_actors._map_child import DEFAULT_MAX_MAP
from daguerreo_actors._options import DEFAULT_MAX_CONCURRENCY, check_options, job_options
from daguerreo_actors._retry import RetryPolicy
from daguerreo_actors._task import Task
from daguerreo_actors._tiers import DaskClient, is_dask_client, placement_errors
from daguerreo_actors._validation import build_graph

__all__ = ["DEFAULT_MAX_CONCURRENCY", "run"]


if TYPE_CHECKING:
    from daguerreo_actors._journal import Journal
    from daguerreo_actors._serializer import Serializer


def run(
    tasks: Iterable[Task | Mapping[str, Any]],
    *,
    ctx: Mapping[Any, Any] | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    retry: RetryPolicy | None = None,
    seed: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    executor: Executor | DaskClient | None = None,
    listeners: Iterable[Listener] = (),
    log_values: bool = False,
    on_conflict: str = "warn",
    on_failure: str = "stop",
    resources: Mapping[str, int] | None = None,
    clock: Clock | None = None,
    journal: str | os.PathLike[str] | Journal | None = None,
    serializer: Serializer | None = None,
    max_map: int = DEFAULT_MAX_MAP,
    name: str | None = None,
    gather: bool = True,
) -> Job:
    """Start running ``tasks``; return the :class:`Job` at once.

    ``ctx`` is the initial context; ``timeout`` the whole job's, in seconds,
    counted from this call (None or inf: none); ``max_retries`` (default 5)
    or ``retry`` (a :class:`RetryPolicy`: delays, backoff, jitter, which
    exceptions) how tasks are retried unless they say so themselves;
    ``seed`` makes the jitter of retry delays reproducible;
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
    writer's result is INVALID_RESULT) or ``"ignore"``; ``on_failure`` what
    a failed task does to the job: ``"stop"`` it (after the ``all_done`` and
    ``any_failed`` tasks) or ``"continue"`` with everything that can still
    run; ``resources`` the capacity of each resource tasks may hold;
    ``clock`` the job's time source (``daguerreo_actors.testing.VirtualClock``
    in tests; the system's by default); ``journal`` an SQLite file (a path
    or a :class:`Journal`) recording the job for ``resume`` and history,
    each completed output serialized with ``serializer`` (pickle by
    default; any object with ``dumps`` and ``loads``); ``max_map`` the most
    items a mapped task (``Task(map_over=...)``) may run, one child each;
    ``name`` what the job is called where it is shown (trace spans, listeners'
    :class:`JobInfo`); ``gather`` (on a Dask cluster) whether ``JobResult.ctx``
    holds the values of keys written on the cluster (fetched once, at the end)
    or a Dask future per key (False: the data stays on the cluster).

    Raises :class:`InvalidTasksError` listing every problem in ``tasks``,
    TypeError or ValueError for a bad option.
    """
    if clock is None:
        clock = REAL_CLOCK
    elif not all(callable(getattr(clock, name, None)) for name in ("monotonic", "time", "timers")):
        raise TypeError(
            "clock must be None or a Clock (daguerreo_actors.testing.VirtualClock), "
            f"got {type(clock).__name__}"
        )
    started = clock.monotonic()
    check_options(
        timeout=timeout,
        max_retries=max_retries,
        retry=retry,
        seed=seed,
        max_concurrency=max_concurrency,
        executor=executor,
        log_values=log_values,
        on_conflict=on_conflict,
        on_failure=on_failure,
        resources=resources,
    )
    if type(max_map) is bool or not isinstance(max_map, int):
        raise TypeError(f"max_map must be an int >= 0, got {max_map!r}")
    if max_map < 0:
        raise ValueError(f"max_map must be an int >= 0, got {max_map!r}")
    if ctx is not None and not isinstance(ctx, Mapping):
        raise TypeError(f"ctx must be a mapping or None, got {type(ctx).__name__}")
    if not isinstance(gather, bool):
        raise TypeError(f"gather must be a bool, got {type(gather).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Iterable):
        raise TypeError(
            "listeners must be an iterable of callables or pykka ActorRefs, "
            f"got {type(listeners).__name__}"
        )
    listener_list = list(listeners)
    first_at: dict[int, int] = {}
    for position, listener in enumerate(listener_list):
        if not is_listener(listener):
            raise TypeError(
                f"listener #{position} must be a callable taking one event or a "
                f"pykka ActorRef, got {type(listener).__name__}"
            )
        # Twice would deliver every event twice (a report counting each attempt twice).
        if first_at.setdefault(id(listener), position) != position:
            raise ValueError(
                f"listener #{position} is listener #{first_at[id(listener)]} again: "
                "give each listener once"
            )

    task_tuple, graph = build_graph(tasks, resources or {})
    misplaced = placement_errors(
        task_tuple, executor, virtual=getattr(clock, "virtual", False) is True
    )
    if misplaced:
        raise InvalidTasksError(misplaced)
    if not gather and not any(
        is_dask_client(executor if task.executor is None else task.executor) for task in task_tuple
    ):
        raise ValueError("gather=False is for a job on a Dask cluster: give executor=a Client")
    options = job_options(
        task_tuple,
        clock=clock,
        started=started,
        timeout=timeout,
        max_retries=max_retries,
        retry=retry,
        seed=seed,
        max_concurrency=max_concurrency,
        executor=executor,
        log_values=log_values,
        on_conflict=on_conflict,
        on_failure=on_failure,
        resources=resources,
    )
    if max_map != DEFAULT_MAX_MAP or not gather:
        options = dataclasses.replace(options, max_map=max_map, gather=gather)
    job_id = new_job_id()
    if journal is not None:
        # Imported here: sqlite3 is not needed by jobs without a journal.
        from daguerreo_actors._resume import check_serializer, start_journal

        side, restored = start_journal(
            journal,
            check_serializer(serializer),
            job_id=job_id,
            tasks=task_tuple,
            graph=graph,
            started=clock.time(),
            options={
                "max_concurrency": max_concurrency,
                "timeout": None if timeout is None else float(timeout),
                "on_failure": on_failure,
                "name": name,
            },
        )
        options = dataclasses.replace(options, journal=side, restored=restored)
    elif serializer is not None:
        raise ValueError("serializer is for the journal: give journal= too")
    log = TransitionLog(job_id, log_values=log_values, name=name)
    holder: list[JobActor] = []
    links = start_listeners(listener_list, job_id, lambda reason: holder[0].listener_lost(reason))
    try:
        announce(
            listener_list,
            job_id,
            lambda: JobInfo(
                job_id=job_id,
                name=name,
                # Read-only: every listener gets this one mapping.
                dependencies=MappingProxyType(
                    {task.name: tuple(sorted(task.dependencies)) for task in task_tuple}
                ),
                mapped=frozenset(task.name for task in task_tuple if task.map_over is not None),
                log_values=log_values,
            ),
        )
        actor = JobActor(
            job_id,
            task_tuple,
            graph,
            ctx={} if ctx is None else dict(ctx),
            options=options,
            log=log,
            links=links,
        )
    except BaseException:
        for link in links:
            link.release()
        if options.journal is not None:  # the job never ran: drop its lease, close
            options.journal.end("failed", clock.time())
        raise
    holder.append(actor)
    actor.start()
    return actor.job
