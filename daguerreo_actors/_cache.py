"""The cache: reusing a task's recorded output when what it read is unchanged.

``Task(cache=True)`` in a job with a journal. Two halves:

- **Recording.** The ctx handed to a caching task is a :class:`ReadTracker`
  that notes every key the task looks up (a lookup of a missing key
  counts: its appearing later changes the answer; iterating the ctx reads
  every key). When the attempt completes, its thread stores, with the
  output, each read key and a digest of its value's serialized form
  (sha256; ``_journal.py``). A value that cannot be serialized makes the
  task uncacheable (one warning, ``cache_unhashable``). A worker process or
  Dask worker gets a plain ctx: there every key counts as read.
- **Checking.** When a caching task becomes READY (its inputs are known
  then), the core sets it aside (``_cached.py``) and :class:`CacheCheck`,
  on a pool thread, looks for the latest output recorded for the task's
  fingerprint (code, dependencies, ``version``) whose reads match the ctx
  snapshot now. A hit is merged like a result, committed to this job's
  journal (so a resume restores it), and reported as ``CacheHit``: READY ->
  COMPLETED with ``cached=True``, holding no slot. A miss says why at debug
  (``cache_miss``) and the task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from daguerreo_actors._logging import log_outside
from daguerreo_actors._messages import CacheHit, CacheMiss
from daguerreo_actors._overrun import Overrun
from daguerreo_actors._result import KeyConflict


class CacheCheck:
    """On a pool thread: ask the journal about one READY caching task."""

    __slots__ = ("_actor", "_node", "_snapshot")

    def __init__(self, actor: CacheShell, node: int, snapshot: Mapping[Any, Any]) -> None:
        self._actor = actor
        self._node = node
        self._snapshot = snapshot

    def run(self) -> None:
        actor, node = self._actor, self._node
        journal = actor._journal
        assert journal is not None
        try:
            found = journal.lookup(node, self._snapshot)
        except BaseException as exc:  # noqa: BLE001 - user values, a broken file
            found = f"the check failed: {type(exc).__name__}"
        if isinstance(found, str):
            log_outside(
                logging.DEBUG,
                "cache_miss",
                job_id=journal.job_id,
                task=actor._names[node],
                reason=found,
            )
            actor.tell(CacheMiss(node))
            return
        actor.commit_cached(node, *found)


class CacheShell(Overrun):
    """The JobActor's side of the cache (a mixin; see the module docstring)."""

    __slots__ = ()

    def _check_caches(self, nodes: list[int]) -> None:
        snapshot = self._book.snapshot
        from daguerreo_actors._pool import shared_pool

        for node in nodes:
            shared_pool().execute(CacheCheck(self, node, snapshot))
        nodes.clear()

    def commit_cached(
        self,
        node: int,
        output: Mapping[Any, Any],
        blob: bytes | str,
        reads: bytes | str,
        source: str,
    ) -> None:
        """A hit (pool thread): merge it, commit it to this job's journal, report it."""
        journal = self._journal
        assert journal is not None
        while True:
            base = self._book
            try:
                book, conflicts = base.merged(output, node, self._graph)  # user code
            except BaseException:  # noqa: BLE001 - a key that cannot be merged: run it
                self.tell(CacheMiss(node))
                return
            with self._lock:
                if self._book is not base:
                    continue
                self._swap_locked(book, output, None)
                self._committing += 1
            break
        try:
            journal.reused(node, blob, reads, source, self._clock.time())
            message: Any = CacheHit(node, output, tuple(conflicts))
        except BaseException:  # noqa: BLE001 - the disk: run the task instead
            message = CacheMiss(node)
        with self._lock:
            self._committing -= 1
            drain = self.enqueue_locked(message)
        self._after_commit(drain, False, None)

    def _on_cache_hit(self, message: CacheHit) -> None:
        started = self._core.cache_hit(message.node, message.output)
        if started is not None:
            if message.conflicts:
                self._record_conflicts(self._names[message.node], message.conflicts)
            self._carry_out(started)

    def _on_cache_miss(self, message: CacheMiss) -> None:
        started = self._core.cache_miss(message.node)
        if started is not None:
            self._carry_out(started)

    def _record_conflicts(self, task: str, conflicts: tuple[tuple[Any, int], ...]) -> None:
        for key, earlier in conflicts:
            conflict = KeyConflict(key, self._names[earlier], task)
            self._conflicts.append(conflict)
            self._outbox.log.key_conflict(conflict)
