"""The ctx of a job on a Dask cluster: outputs stay on the workers that made them.

A task that runs on the cluster returns its output there: the attempt's
Dask future holds it, on the worker that produced it. The client learns
only the output's keys (``_dask_events.py``) and merges an
:class:`OnCluster` placeholder per key into the job's ctx book, so the
engine (conflicts, events, ``result_keys``) works as on any tier without
the values. Values come back only where the client needs them: a mapped
task's input, ``log_values=True``, a journal, a job mixing tiers (a thread's
task reads the ctx in this process), and ``JobResult.ctx`` at the end
(``run(gather=True)``; ``gather=False`` leaves a Dask future per key).

A task's ctx is rebuilt on its worker, never sent from the client whole
(that would be quadratic traffic: every task shipping every key). The
:class:`ClusterCtx` is told of every merge in the job's merge order, under
the job's lock (``CommitLog``, ``_ctx.py``), and keeps the log of entries:
the attempt's future for an output made on the cluster, the mapping itself
for one made here (another tier, a cache hit, a mapped task's collection).
A snapshot of ``m`` merges is then a *base* (a merged ``immutables.Map`` on
the cluster, covering the first ``end`` entries) plus the entries from
``end`` to ``m``, passed as Dask dependencies: Dask moves them between
workers, the client sends references. Once more than :data:`COMPACT`
entries follow the newest base, a merge task makes a new one, so each
submit carries at most that many references: client traffic per task is
constant. Base 0 is the initial ctx (with a resumed job's restored
outputs), sent once as a task of its own.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import operator
import pickle
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import distributed
import immutables

from daguerreo_actors._logging import log_outside
from daguerreo_actors._pickling import PROTOCOL, offending
from daguerreo_actors._pool import shared_pool

if TYPE_CHECKING:
    from collections.abc import Callable

    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._result import JobResult

#: Entries after the newest base that make a new base (``merge_entries``).
#: The bound on references per submit; a merge costs a Dask task.
COMPACT = 16

#: The largest initial ctx (pickled bytes) that each submit carries itself.
EMBED = 64 * 1024

#: How long ``JobResult.ctx`` waits for the cluster's values (seconds).
GATHER_TIMEOUT = 600.0


class OnCluster:
    """A ctx value that stays on the cluster: key ``key`` of the output in ``future``.

    Its repr names the Dask key, never the value.
    """

    __slots__ = ("future", "key")

    def __init__(self, future: Any, key: Any) -> None:
        self.future = future
        self.key = key

    def __repr__(self) -> str:
        return f"<on the cluster: {self.future.key}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a ctx value that stayed on the Dask cluster cannot be pickled here: "
            "read it in a task on the cluster, or fetch it (run(gather=True))"
        )


#: An entry of the log: ("r", future of an output mapping), ("l", a mapping
#: made here) or ("m", {key: a ``_part``}): made here, with values that stayed
#: on the cluster (a mapped task's collected outputs: lists of them).
Entry = tuple[str, Any]


def _part(value: Any) -> tuple[Any, ...]:
    """A value for the worker: ("v", value), ("f", future, key) or ("L", [parts])."""
    if type(value) is OnCluster:
        return ("f", value.future, value.key)
    if type(value) is list and any(type(item) is OnCluster for item in value):
        return ("L", [_part(item) for item in value])
    return ("v", value)


def _value(part: tuple[Any, ...]) -> Any:
    """On the worker: Dask has put each future's output mapping in its place."""
    if part[0] == "v":
        return part[1]
    if part[0] == "f":
        return part[1][part[2]]
    return [_value(item) for item in part[1]]


def _held(value: Any) -> bool:
    """The value is, or lists, placeholders."""
    return type(value) is OnCluster or (
        type(value) is list and any(type(item) is OnCluster for item in value)
    )


def merge_entries(base: Any, entries: list[Entry] | tuple[Entry, ...]) -> immutables.Map[Any, Any]:
    """A snapshot from a base and the entries after it (on a worker)."""
    ctx: immutables.Map[Any, Any] = (
        base if isinstance(base, immutables.Map) else immutables.Map(base or ())
    )
    for kind, payload in entries:
        if kind == "m":
            payload = {key: _value(part) for key, part in payload.items()}
        if payload:
            ctx = ctx.update(payload)
    return ctx


class ClusterCtx:
    """The log of merges and its bases; see the module docstring."""

    def __init__(self, client: Any, *, gather: bool = True) -> None:
        self._client = client
        self._gather = gather
        self._lock = threading.Lock()
        self._initial: Mapping[Any, Any] = {}
        self._log: list[Entry] = []
        self._ends: list[int] = []  # the bases' ends, ascending
        self._bases: list[Any] = []  # their futures (None: an empty initial ctx)
        #: Set by the tier: an attempt's output future, if it ran on the cluster.
        self.future_of: Any = lambda attempt: None

    def initial(self, snapshot: Mapping[Any, Any]) -> None:
        self._initial = snapshot

    def committed(self, output: Mapping[Any, Any], attempt: Attempt | None) -> None:
        """The job's lock is held: an append, no user code."""
        future = None if attempt is None else self.future_of(attempt)
        if future is not None:
            entry: Entry = ("r", future)
        elif any(_held(value) for value in output.values()):
            entry = ("m", {key: _part(value) for key, value in output.items()})
        else:
            entry = ("l", dict(output))
        self._log.append(entry)

    def snapshot(self, commits: int, task: str) -> tuple[Any, list[Entry]]:
        """The base and entries that rebuild the snapshot of ``commits`` merges
        (a pool thread: may submit a merge task). Raises NotPicklableError
        naming ``task`` and the key if the initial ctx cannot cross."""
        with self._lock:
            if not self._ends:
                self._bases.append(self._base0(task))  # first: it may raise
                self._ends.append(0)
            at = bisect.bisect_right(self._ends, commits) - 1
            end, base = self._ends[at], self._bases[at]
            entries = self._log[end:commits]
            if len(entries) > COMPACT:
                base = self._client.submit(merge_entries, base, entries, pure=False, retries=0)
                entries = []
                if commits > self._ends[-1]:
                    self._ends.append(commits)
                    self._bases.append(base)
            return base, entries

    def finish(self, result: JobResult, *, then: Callable[[JobResult], None]) -> None:
        """Resolve the job with its ctx's values (``run(gather=True)``) or futures,
        from a pool thread (fetching waits on the network); ``then`` resolves it."""
        if not any(_held(value) for value in result.ctx.values()):
            self.release()
            then(result)
            return
        shared_pool().execute(_Finish(self, result, then))

    def _base0(self, task: str) -> Any:
        """The initial ctx: itself when small (each submit carries it: no task to
        wait for), else a task of its own, sent once. A task, not a scatter: a
        lost worker's copy is made again from the graph, scattered data is gone."""
        if not self._initial:
            return None
        initial = immutables.Map(self._initial)
        try:
            size = len(pickle.dumps(initial, protocol=PROTOCOL))
        except Exception as exc:  # noqa: BLE001 - any pickling error: name the key
            raise offending(task, "ctx key", initial, exc) from None
        if size <= EMBED:
            return initial
        return self._client.submit(merge_entries, initial, (), pure=False, retries=0)

    def final(self, ctx: dict[Any, Any], *, gather: bool) -> dict[Any, Any]:
        """``JobResult.ctx``: the placeholders gathered, or made one Dask future per key."""
        found = [key for key, value in ctx.items() if _held(value)]
        if not found:
            return ctx
        client = self._client
        if not gather:
            for key in found:
                ctx[key] = _resolved(
                    ctx[key], lambda held: client.submit(operator.getitem, held.future, held.key)
                )
            return ctx
        futures: dict[Any, Any] = {}
        for key in found:
            _resolved(ctx[key], lambda held: futures.setdefault(held.future.key, held.future))
        distributed.wait(list(futures.values()), timeout=GATHER_TIMEOUT)  # type: ignore[no-untyped-call]
        outputs = dict(zip(futures, client.gather(list(futures.values())), strict=True))
        for key in found:
            ctx[key] = _resolved(ctx[key], lambda held: outputs[held.future.key][held.key])
        return ctx

    def release(self) -> None:
        """Drop the references: the cluster frees what no one holds."""
        with self._lock:
            self._log.clear()
            self._ends.clear()
            self._bases.clear()


def _resolved(value: Any, each: Callable[[OnCluster], Any]) -> Any:
    if type(value) is OnCluster:
        return each(value)
    return [each(item) if type(item) is OnCluster else item for item in value]


class _Finish:
    """Fetch (or make futures of) the ctx's cluster values, then resolve the job.

    If fetching fails (a lost worker, the deadline), the keys hold Dask
    futures instead: nothing is dropped, and the failure is logged.
    """

    __slots__ = ("_cluster", "_result", "_then")

    def __init__(
        self, cluster: ClusterCtx, result: JobResult, then: Callable[[JobResult], None]
    ) -> None:
        self._cluster = cluster
        self._result = result
        self._then = then

    def run(self) -> None:
        result = self._result
        cluster = self._cluster
        try:
            try:
                ctx = cluster.final(dict(result.ctx), gather=cluster._gather)
            except Exception as exc:  # noqa: BLE001 - the cluster's: keep futures
                log_outside(logging.ERROR, "ctx_gather_failed", exc=exc)
                ctx = cluster.final(dict(result.ctx), gather=False)
            result = dataclasses.replace(result, ctx=ctx)
        finally:
            cluster.release()
            self._then(result)
