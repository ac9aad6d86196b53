"""What a caching task read, and whether it still holds: the recording half of the cache.

See ``_cache.py`` for the whole story. Kept apart (no engine imports) so
the commit path can use it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import immutables

from daguerreo_actors._logging import log_outside
from daguerreo_actors._text import cut, safe_repr

if TYPE_CHECKING:
    from daguerreo_actors._serializer import Serializer

_MISSING = None  # the digest of a key that was looked up and absent
_KEY = "k"  # a read of one key
_ALL_KEYS = "*"  # the task iterated the ctx


class ReadTracker(Mapping[Any, Any]):
    """A ctx that notes which keys the task read (see the module docstring)."""

    __slots__ = ("_ctx", "everything", "read")

    def __init__(self, ctx: Mapping[Any, Any]) -> None:
        self._ctx = ctx  # the snapshot the task was given
        self.read: dict[Any, None] = {}
        self.everything = False

    def __getitem__(self, key: Any) -> Any:
        self.read[key] = None
        return self._ctx[key]

    def __contains__(self, key: object) -> bool:
        self.read[key] = None
        return key in self._ctx

    def __iter__(self) -> Iterator[Any]:
        self.everything = True
        return iter(self._ctx)

    def __len__(self) -> int:
        self.everything = True
        return len(self._ctx)

    def __reduce__(self) -> Any:
        # Crossing to another process: there, reads are not seen.
        self.everything = True
        return (immutables.Map, (dict(self._ctx),))

    def keys_read(self) -> list[Any]:
        return list(self._ctx) if self.everything else list(self.read)


def digest(serializer: Serializer, value: Any) -> str:
    data = serializer.dumps(value)
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def encode_reads(serializer: Serializer, task: str, tracker: ReadTracker) -> bytes | str | None:
    """The read keys and their digests, serialized; None (and a warning) if impossible."""
    ctx = tracker._ctx
    pairs: list[list[Any]] = []
    if tracker.everything:
        # It saw the whole ctx: a key added later changes what it saw too.
        pairs.append([_ALL_KEYS, None, key_set(ctx)])
    for key in tracker.keys_read():
        try:
            pairs.append([_KEY, key, digest(serializer, ctx[key]) if key in ctx else _MISSING])
            continue
        except BaseException as exc:  # noqa: BLE001 - user values
            error = exc
        log_outside(
            logging.WARNING,
            "cache_unhashable",
            task=task,
            key=cut(safe_repr(key), 100),
            error=f"{type(error).__name__}",
        )
        return None
    try:
        return serializer.dumps(pairs)
    except BaseException:  # noqa: BLE001 - a key the serializer cannot hold
        log_outside(logging.WARNING, "cache_unhashable", task=task, key="(a key)", error="keys")
        return None


def matches(serializer: Serializer, reads: bytes | str, ctx: Mapping[Any, Any]) -> str | None:
    """None if every recorded read is what ``ctx`` holds now, else why not."""
    for kind, key, recorded in serializer.loads(reads):
        if kind == _ALL_KEYS:
            if key_set(ctx) != recorded:
                return "the ctx has other keys (the task read them all)"
            continue
        now = _MISSING
        if key in ctx:
            now = digest(serializer, ctx[key])
        if now != recorded:
            return f"ctx key {cut(safe_repr(key), 100)} changed"
    return None


def key_set(ctx: Mapping[Any, Any]) -> str:
    """A digest of the ctx's keys, whatever their order."""
    names = sorted(safe_repr(key) for key in ctx)
    return hashlib.sha256("\0".join(names).encode("utf-8", "surrogatepass")).hexdigest()
