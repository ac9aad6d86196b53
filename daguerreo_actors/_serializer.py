"""How a journal writes outputs: the ``serializer=`` protocol and the pickle default."""

from __future__ import annotations

import pickle
from typing import Any, Protocol

__all__ = ["PICKLE", "Serializer"]


class Serializer(Protocol):
    """What ``serializer=`` takes: ``pickle`` itself, ``json``, or your own."""

    def dumps(self, value: Any, /) -> bytes | str: ...

    def loads(self, data: Any, /) -> Any: ...


class _Pickle:
    @staticmethod
    def dumps(value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> Any:
        return pickle.loads(data)  # our own journal's bytes


PICKLE: Serializer = _Pickle()
