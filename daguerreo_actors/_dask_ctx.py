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
workers, the client sends references. When a start would carry more than
:data:`COMPACT` entries (or :data:`COMPACT_REFS` futures: a mapped task's
collection references one per child), a merge task makes a new base
first, so each submit carries a bounded number of references: client
traffic per task is constant. At the job's end, ``JobResult.ctx`` is
fetched (one task picks the values, one result) or left as futures, and
every reference is dropped, the attempts' futures too: the cluster keeps
nothing of the job's. Base 0 is the initial ctx (with a resumed job's restored
outputs), sent once as a task of its own.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle  # type: ignore[import-untyped]
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

#: Futures referenced by the entries after the newest base that make a new
#: base too: a mapped task's collection can reference one per child.
COMPACT_REFS = 64

#: The largest initial ctx (pickled bytes) that each submit carries itself.
EMBED = 64 * 1024

#: How long ``JobResult.ctx`` waits for the cluster's values (seconds).
GATHER_TIMEOUT = 600.0


class OnCluster:
    """A ctx value that stays on the cluster: key ``key`` of the output whose future
    ``holder.future`` is (the attempt's handle; None once the job let it go).

    Its repr names the Dask key, never the value; pickled, it keeps only that.
    """

    __slots__ = ("holder", "key")

    def __init__(self, holder: Any, key: Any) -> None:
        self.holder = holder
        self.key = key

    @property
    def future(self) -> Any:
        return self.holder.future

    def __repr__(self) -> str:
        future = self.holder.future
        return f"<on the cluster: {'released' if future is None else future.key}>"

    def __reduce__(self) -> Any:
        return (_released, (self.key,))


class _Released:
    __slots__ = ()
    future = None


def _released(key: Any) -> OnCluster:
    return OnCluster(_Released(), key)


class Released(Exception):  # noqa: N818 - a state, not an error of the user's
    """The job's cluster ctx is gone (the job ended): an attempt that starts now never runs."""


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


def _values(parts: dict[Any, tuple[Any, ...]]) -> dict[Any, Any]:
    return {key: _value(part) for key, part in parts.items()}


def _value(part: tuple[Any, ...]) -> Any:
    """On the worker: Dask has put each future's output mapping in its place."""
    if part[0] == "v":
        return part[1]
    if part[0] == "f":
        return _output(part[1])[part[2]]
    return [_value(item) for item in part[1]]


def _held(value: Any) -> bool:
    """The value is, or lists, placeholders."""
    return type(value) is OnCluster or (
        type(value) is list and any(type(item) is OnCluster for item in value)
    )


def _output(output: Any) -> Mapping[Any, Any]:
    """An attempt's output on a worker; not a mapping when Dask remade it after
    the job's end (the attempt read as abandoned and did not run)."""
    if not isinstance(output, Mapping):
        raise LookupError(
            "an output kept on the cluster was lost with its worker and could not be made "
            "again (its job has ended)"
        )
    return output


def merge_entries(base: Any, entries: list[Entry] | tuple[Entry, ...]) -> immutables.Map[Any, Any]:
    """A snapshot from a base and the entries after it (on a worker)."""
    ctx: immutables.Map[Any, Any] = (
        base if isinstance(base, immutables.Map) else immutables.Map(base or ())
    )
    for kind, payload in entries:
        if kind == "r":
            payload = _output(payload)
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
        self._refs: list[int] = []  # futures each entry references
        self._released = False
        self._ends: list[int] = []  # the bases' ends, ascending
        self._bases: list[Any] = []  # their futures (None: an empty initial ctx)
        #: Set by the tier: an attempt's output future, if it ran on the cluster,
        #: and what lets the job's futures go at its end.
        self.future_of: Any = lambda attempt: None
        self.on_release: Callable[[], None] = lambda: None

    def initial(self, snapshot: Mapping[Any, Any]) -> None:
        self._initial = snapshot

    def committed(self, output: Mapping[Any, Any], attempt: Attempt | None) -> None:
        """The job's lock is held: an append, no user code."""
        future = None if attempt is None else self.future_of(attempt)
        refs = 1
        if future is not None:
            entry: Entry = ("r", future)
        elif any(_held(value) for value in output.values()):
            # A mapped task's collection: O(children), once, under the lock.
            parts = {key: _part(value) for key, value in output.items()}
            entry = ("m", parts)
            refs = sum(len(part[1]) if part[0] == "L" else 1 for part in parts.values())
        else:
            entry = ("l", dict(output))
        self._log.append(entry)
        self._refs.append(refs)

    def snapshot(self, commits: int, task: str) -> tuple[Any, list[Entry]]:
        """The base and entries that rebuild the snapshot of ``commits`` merges
        (a pool thread: may submit a merge task). Raises NotPicklableError
        naming ``task`` and the key if the initial ctx cannot cross."""
        with self._lock:
            if self._released:
                raise Released
            if not self._ends:
                self._bases.append(self._base0(task))  # first: it may raise
                self._ends.append(0)
            at = bisect.bisect_right(self._ends, commits) - 1
            end, base = self._ends[at], self._bases[at]
            entries = self._log[end:commits]
            if len(entries) > COMPACT or sum(self._refs[end:commits]) > COMPACT_REFS:
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
            # cloudpickle, as Dask: a lambda in the ctx crosses as it always did.
            size = len(cloudpickle.dumps(initial, protocol=PROTOCOL))
        except Exception as exc:  # noqa: BLE001 - any pickling error: name the key
            raise offending(task, "ctx key", initial, exc) from None
        if size <= EMBED:
            return initial
        return self._client.submit(merge_entries, initial, (), pure=False, retries=0)

    def final(self, ctx: dict[Any, Any], *, gather: bool) -> dict[Any, Any]:
        """``JobResult.ctx``: the keys held on the cluster fetched, or a Dask future each.

        Fetching is one task that picks just these keys' values from the
        outputs on the cluster (not whole outputs: a key a later task
        overwrote stays there) and one result with a deadline.
        """
        parts = {key: _part(value) for key, value in ctx.items() if _held(value)}
        if not parts:
            return ctx
        client = self._client
        if gather:
            picked = client.submit(_values, parts, pure=False, retries=0)
            ctx.update(picked.result(timeout=GATHER_TIMEOUT))
        else:
            for key, part in parts.items():
                ctx[key] = client.submit(_value, part, pure=False, retries=0)
        return ctx

    def release(self) -> None:
        """Drop the references: the cluster frees what no one holds (the tier
        drops its handles' futures: ``on_release``)."""
        with self._lock:
            self._released = True
            self._log.clear()
            self._refs.clear()
            self._ends.clear()
            self._bases.clear()
        self.on_release()


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
