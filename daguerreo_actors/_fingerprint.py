"""Fingerprints: what makes a task "the same task" across runs, for resume and the cache.

A task's fingerprint hashes its function's code (the bytecode, constants
and names of the code object and of the code objects nested in it, so an
edit to the body or to a nested function shows; not its line numbers,
so moving it does not), its qualified name, its dependencies and its
``version``. Options that do not change what the task computes (timeout,
retries, priority, ...) are not in it. A callable without a code object
(a builtin, a C function, a callable object without one) is known by its
qualified name only: bump ``version`` when it changes. What a function
closed over (constants: numbers, strings, tuples of them; other objects
by their type) and its defaults count too (a factory's tasks differ by
them); values are written in a process-independent form (sets sorted, an
object with a default ``repr`` known by its type only).
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Sequence
from typing import Any

from daguerreo_actors._dag import DagFunction
from daguerreo_actors._task import Task


def task_fingerprint(task: Task) -> str:
    digest = hashlib.sha256()
    _add_callable(digest, task.fn, depth=0)
    digest.update(b"\0deps\0")
    for dep in sorted(task.dependencies):
        digest.update(dep.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(b"\0version\0" + repr(task.version).encode())
    if task.map_over is not None:  # only then: the fingerprints of other tasks stay as they were
        digest.update(b"\0map\0" + repr((task.map_over, task.map_as)).encode())
    return digest.hexdigest()[:32]


def tasks_fingerprint(fingerprints: Sequence[tuple[str, str]]) -> str:
    """The task list's: every (name, fingerprint), in name order."""
    digest = hashlib.sha256()
    for name, fingerprint in sorted(fingerprints):
        digest.update(name.encode("utf-8", "surrogatepass") + b"\0" + fingerprint.encode() + b"\0")
    return digest.hexdigest()[:32]


def _add_callable(digest: Any, fn: object, depth: int) -> None:
    if depth > 5:
        return
    if isinstance(fn, functools.partial):
        _add_callable(digest, fn.func, depth + 1)
        digest.update(_stable(fn.args).encode() + _stable(sorted(fn.keywords.items())).encode())
        return
    if isinstance(fn, DagFunction):  # a dag task: the user's function, and how it is called
        digest.update(repr((fn.inputs, fn.outputs, fn.map_as, fn.split)).encode())
        fn = fn.__wrapped__
    target = getattr(fn, "__func__", fn)  # a bound method: its function
    code = getattr(target, "__code__", None)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    digest.update(f"{module}.{name}\0".encode("utf-8", "surrogatepass"))
    if isinstance(code, types.CodeType):
        _add_code(digest, code)
        # What a factory closed over, and the defaults, are the computation too.
        for cell in getattr(target, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value) and not isinstance(value, type):
                _add_callable(digest, value, depth + 1)
            elif _is_constant(value):
                digest.update(_stable(value).encode("utf-8", "surrogatepass"))
            else:  # mutable state (a counter, a cache): its type, not its contents
                digest.update(f"<{type(value).__qualname__}>".encode())
        digest.update(_stable(getattr(target, "__defaults__", None)).encode())
        digest.update(_stable(getattr(target, "__kwdefaults__", None)).encode())
    elif not callable(getattr(target, "__code__", None)):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - a callable object
        code = getattr(call, "__code__", None)
        if isinstance(code, types.CodeType):
            _add_code(digest, code)


def _add_code(digest: Any, code: types.CodeType) -> None:
    digest.update(_code_digest(code))


@functools.lru_cache(maxsize=4096)
def _code_digest(code: types.CodeType) -> bytes:
    """A code object's part, once per code object: a factory's tasks share one (hashing
    it again for each of 10k tasks cost about 4 µs per task of every journaled job).
    Code objects hash and compare by value, so an equal one gets the same digest."""
    digest = hashlib.sha256()
    _hash_code(digest, code)
    return digest.digest()


def _hash_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode("utf-8", "surrogatepass"))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(digest, const)
        else:
            digest.update(_stable(const).encode("utf-8", "surrogatepass"))


_PLAIN = frozenset({bool, int, float, complex, str, bytes})


def _is_constant(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_is_constant(v) for v in value)
    return False


def _stable(value: object) -> str:
    """A repr that is the same in every process (sets sorted; no memory addresses)."""
    if value is None or type(value) in _PLAIN:  # the common case first
        return repr(value)
    if isinstance(value, (frozenset, set)):
        return "{" + ", ".join(sorted(_stable(v) for v in value)) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_stable(v) for v in value) + ")"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(sorted(f"{_stable(k)}: {_stable(v)}" for k, v in value.items())) + "}"
        )
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user object
        text = ""
    if " at 0x" in text:  # the default repr: only the type is stable
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
    return text
