"""The process tier: attempts on a ``concurrent.futures.ProcessPoolExecutor``.

The task function and the ctx snapshot travel pickled; so does the result
(``_pickling.py``).

``is_active()`` inside the worker process reads a flag in shared memory
that the parent flips when it abandons the attempt (timeout, cancel, the
job's end). The block (``multiprocessing.shared_memory``) holds, per job,
one "job running" byte and, per node, a slot: the number of the attempt
that is currently wanted (a little-endian int32) and the worker's
``real_monotonic()`` when that attempt last called ``is_active()`` (a
float64, its heartbeat: the system's monotonic clock is one clock for every
process of the machine). An attempt is active while the job runs and its
node's slot holds its own number. A retry writes its new
number, so an abandoned attempt still running elsewhere reads False. The
block is unlinked when the job ends; an attempt that starts after that
cannot attach to it and does not run. In the worker, ``is_active()`` keeps
answering (False) after the attempt returned, for code that kept it.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping, Sized
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker, shared_memory
from typing import TYPE_CHECKING, Any

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._clock import real_monotonic
from daguerreo_actors._pickling import call_remotely, pickle_call, pickle_result
from daguerreo_actors._tiers import NOT_RUN, FutureHandle, Reporter, follow_future

if TYPE_CHECKING:
    from daguerreo_actors._pool import Runnable
    from daguerreo_actors._task import TaskFn

_SLOT = struct.Struct("<i")  # the wanted attempt's number, at the slot's start
_BEAT = struct.Struct("<d")  # its last heartbeat, 8 bytes in
_SLOT_SIZE = 16
_HEADER = 8  # the job byte, padded so the slots stay 8-byte aligned


def _offset(node: int) -> int:
    return _HEADER + _SLOT_SIZE * node


class _SlotHandle:
    """Clears the attempt's slot (unless a retry owns it by now), then cancels its future.

    A queued future is taken out; a running one cannot be (``Future.cancel``
    of a ``ProcessPoolExecutor`` only drops what has not started).
    """

    __slots__ = ("_attempt", "_tier", "future")

    def __init__(self, tier: ProcessPoolTier, attempt: Attempt) -> None:
        self._tier = tier
        self._attempt = attempt
        self.future: Any = None

    def cancel(self) -> None:
        self._tier.lower(self._attempt)
        if self.future is not None:
            FutureHandle(self.future).cancel()

    def beat(self) -> float:
        """When the worker last heard from the attempt (``real_monotonic()``; 0: never)."""
        return self._tier.beat(self._attempt)


class ProcessPoolTier:
    """Runs attempts in a ProcessPoolExecutor; see the module docstring."""

    def __init__(self, executor: ProcessPoolExecutor | None, nodes: int) -> None:
        self._executor = executor
        self._memory = shared_memory.SharedMemory(
            create=True, size=_HEADER + _SLOT_SIZE * max(nodes, 1)
        )
        self._buf = _buffer(self._memory)
        self._buf[0] = 1
        self._closed = False

    def start(
        self, attempt: Attempt, fn: TaskFn, ctx: Mapping[Any, Any], report: Reporter
    ) -> Runnable | None:
        number = attempt.number
        offset = _offset(attempt.node)
        handle = self._handle(attempt)
        try:
            payload = pickle_call(attempt.task, fn, ctx)
            # Raise the attempt's flag only if it is still wanted: an abandon
            # during the pickling must not leave it raised (nor overwrite the
            # flag of a retry that started since).
            if not attempt.attach(handle, lambda: _raise(self._buf, offset, number)):
                report.not_run(attempt)
                return None
            future = self._submit(payload, self._memory.name, attempt.node, number, attempt.task)
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            report.raised(attempt, exc)
            return None
        handle.future = future
        follow_future(future, attempt, report, handle=handle, decode=pickle.loads)
        return None

    def _handle(self, attempt: Attempt) -> _SlotHandle:
        return _SlotHandle(self, attempt)

    def _submit(self, payload: bytes, memory: str, node: int, number: int, task: str) -> Any:
        assert self._executor is not None
        return self._executor.submit(run_in_process, payload, memory, node, number, task)

    def lower(self, attempt: Attempt) -> None:
        """Lower the attempt's flag, if it is still the one raised."""
        if self._closed:
            return
        offset = _offset(attempt.node)
        if _SLOT.unpack_from(self._buf, offset)[0] == attempt.number:
            _SLOT.pack_into(self._buf, offset, 0)

    def beat(self, attempt: Attempt) -> float:
        """The attempt's last heartbeat in its worker (0.0 if none, or no longer its slot)."""
        if self._closed:
            return 0.0
        offset = _offset(attempt.node)
        if _SLOT.unpack_from(self._buf, offset)[0] != attempt.number:
            return 0.0
        return float(_BEAT.unpack_from(self._buf, offset + 8)[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._buf[0] = 0
            self._memory.close()
        finally:
            # Whatever happened above, the name goes: no segment outlives its job.
            self._memory.unlink()


def _raise(buf: memoryview, offset: int, number: int) -> None:
    _BEAT.pack_into(buf, offset + 8, 0.0)  # a new attempt has not beaten yet
    _SLOT.pack_into(buf, offset, number)


def _attach(name: str) -> shared_memory.SharedMemory:
    # Attaching registers the block with the resource tracker, which then
    # unlinks it, or warns, when this worker exits (with spawn), or drops
    # the parent's own registration (with fork, the tracker is shared). The
    # parent owns the block: attach without registering. (Python 3.13 has
    # track=False for this.) Pool workers run one call at a time.
    register = resource_tracker.register
    resource_tracker.register = _no_register
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _no_register(name: Sized, rtype: str) -> None:
    return None


def _buffer(memory: shared_memory.SharedMemory) -> memoryview:
    buf = memory.buf
    assert buf is not None
    return buf


class _WorkerFlag:
    """``is_active`` in the worker: the shared flag while attached, False after."""

    __slots__ = ("_attempt", "_buf", "_offset")

    def __init__(self, buf: memoryview, node: int, attempt: int) -> None:
        self._buf: memoryview | None = buf
        self._offset = _offset(node)
        self._attempt = attempt

    def __call__(self, progress: object = None) -> bool:
        # ``progress`` stays in the worker: only the heartbeat crosses over.
        buf = self._buf
        if buf is None:
            return False
        active = bool(buf[0]) and _SLOT.unpack_from(buf, self._offset)[0] == self._attempt
        if active:
            _BEAT.pack_into(buf, self._offset + 8, real_monotonic())
        return active

    def release(self) -> None:
        self._buf = None


def run_in_process(payload: bytes, memory_name: str, node: int, attempt: int, task: str) -> bytes:
    """The worker side: attach the flags, run the attempt, pickle the result."""
    try:
        memory = _attach(memory_name)
    except FileNotFoundError:
        return pickle.dumps(NOT_RUN)  # the job has ended
    flag = _WorkerFlag(_buffer(memory), node, attempt)
    try:
        if not flag():
            return pickle.dumps(NOT_RUN)
        fn, ctx = pickle.loads(payload)
        result = call_remotely(fn, ctx, flag)
        return pickle_result(task, result)
    finally:
        flag.release()
        memory.close()
