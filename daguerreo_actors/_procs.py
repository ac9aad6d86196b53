"""The process tier: attempts on a ``concurrent.futures.ProcessPoolExecutor``.

The task function and the ctx snapshot travel pickled; so does the result.
Both directions are pickled by us, not by the executor, so that a failure
names the task and the offending key (``NotPicklableError``) instead of
surfacing as a bare PicklingError, or as a broken pool, later.

``is_active()`` inside the worker process reads a flag in shared memory
that the parent flips when it abandons the attempt (timeout, cancel, the
job's end). The block (``multiprocessing.shared_memory``) holds, per job,
one "job running" byte and, per node, the number of the attempt that is
currently wanted (a little-endian int32): an attempt is active while the
job runs and its node's slot holds its own number. A retry writes its new
number, so an abandoned attempt still running elsewhere reads False. The
block is unlinked when the job ends; an attempt that starts after that
cannot attach to it and does not run.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Mapping, Sized
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import resource_tracker, shared_memory
from typing import TYPE_CHECKING, Any

from daguerreo_actors._errors import NotPicklableError

if TYPE_CHECKING:
    from daguerreo_actors._messages import RunAttempt
    from daguerreo_actors._task_actor import TaskActor

_SLOT = struct.Struct("<i")
_HEADER = 8  # the job byte, padded so the slots stay 4-byte aligned


class ProcessBackend:
    """Runs attempts in a ProcessPoolExecutor; see the module docstring."""

    heavy = True  # pickling the ctx is work: never on the JobActor's thread

    def __init__(self, executor: ProcessPoolExecutor, nodes: int) -> None:
        self._executor = executor
        self._memory = shared_memory.SharedMemory(create=True, size=_HEADER + 4 * max(nodes, 1))
        self._buf = _buffer(self._memory)
        self._buf[0] = 1
        self._closed = False

    def start(self, actor: TaskActor, message: RunAttempt) -> None:
        attempt = message.attempt
        offset = _HEADER + 4 * actor.node
        try:
            payload = pickle_call(actor.name, actor.fn, message.ctx)
            # Raise the attempt's flag only if it is still wanted: an abandon
            # during the pickling must not leave it raised (nor overwrite the
            # flag of a retry that started since).
            if not actor.attach(attempt, lambda: _SLOT.pack_into(self._buf, offset, attempt)):
                actor.report_cancelled(attempt)
                return
            future = self._executor.submit(
                run_in_process, payload, self._memory.name, actor.node, attempt, actor.name
            )
        except BaseException as exc:  # noqa: BLE001 - reported as the attempt's failure
            actor.report_raised(attempt, exc)
            return
        future.add_done_callback(lambda done: _report(actor, attempt, done))

    def cancel(self, actor: TaskActor) -> None:
        if self._closed:
            return
        offset = _HEADER + 4 * actor.node
        # Only if the slot still names this attempt: never unset a retry's.
        if _SLOT.unpack_from(self._buf, offset)[0] == actor.handle:
            _SLOT.pack_into(self._buf, offset, 0)

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


def _report(actor: TaskActor, attempt: int, future: Future[bytes]) -> None:
    try:
        payload = future.result(timeout=0)
        result = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001 - a raise, a broken pool, a bad pickle
        actor.report_raised(attempt, exc)
        return
    if result is _NOT_RUN:
        actor.report_cancelled(attempt)
        return
    actor.report_returned(attempt, result)


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


class _NotRun:
    """What a worker returns for an attempt that started after its job ended."""

    def __reduce__(self) -> str:
        return "_NOT_RUN"


_NOT_RUN = _NotRun()


def pickle_call(task: str, fn: Callable[..., Any], ctx: Mapping[Any, Any]) -> bytes:
    """Pickle (fn, ctx), or raise NotPicklableError naming the culprit."""
    try:
        return pickle.dumps((fn, ctx), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        try:
            pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as fn_exc:
            raise NotPicklableError(
                f"task {task!r}: its fn cannot be pickled to run in another process "
                f"({type(fn_exc).__name__}: {fn_exc}); define it at module level "
                "(not a lambda or a local function)"
            ) from fn_exc
        raise _offending(task, "ctx key", ctx, exc) from exc


def check_result(task: str, result: Any) -> bytes:
    """Pickle a task's result in the worker, or raise NotPicklableError."""
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        if isinstance(result, Mapping):
            raise _offending(task, "result key", result, exc) from None
        raise NotPicklableError(
            f"task {task!r}: its result cannot be pickled ({type(exc).__name__}: {exc})"
        ) from None


def _offending(
    task: str, what: str, mapping: Mapping[Any, Any], exc: Exception
) -> NotPicklableError:
    bad: list[str] = []
    for key, value in mapping.items():
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001
            bad.append(repr(key))
    culprits = ", ".join(bad) if bad else "(a key itself)"
    return NotPicklableError(
        f"task {task!r}: {what} {culprits} cannot be pickled to cross processes "
        f"({type(exc).__name__}: {exc})"
    )


def run_in_process(payload: bytes, memory_name: str, node: int, attempt: int, task: str) -> bytes:
    """The worker side: attach the flags, run the attempt, pickle the result."""
    try:
        memory = _attach(memory_name)
    except FileNotFoundError:
        return pickle.dumps(_NOT_RUN)  # the job has ended
    try:
        offset = _HEADER + 4 * node
        buf = _buffer(memory)

        def is_active() -> bool:
            return bool(buf[0]) and _SLOT.unpack_from(buf, offset)[0] == attempt

        if not is_active():
            return pickle.dumps(_NOT_RUN)
        fn, ctx = pickle.loads(payload)
        result = fn(ctx, is_active)
        return check_result(task, result)
    finally:
        memory.close()
