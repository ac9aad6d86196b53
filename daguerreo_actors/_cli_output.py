"""How ``daguerreo-actors run`` prints the final ctx: for people, as JSON, or as reprs.

- ``summary`` (the default): one line per key (name, type, size, and the
  start of the value, cut to the terminal's width). The value's text is
  built with a bounded repr, so a 5 MB ``bytes`` or a 200,000-item list
  costs a line, not megabytes.
- ``json``: the whole ctx as one JSON object, or, if any value is not
  JSON (a ``datetime``, a ``set``, NaN, a ``bytes``, a key that is not a
  string at any depth, a cycle), nothing and a :class:`NotJSONError` naming
  the key and where in its value. Nothing is coerced: a key ``1`` never
  becomes ``"1"``, a value never becomes its repr.
- ``repr``: one ``key: repr(value)`` line per key, in full.

Everything printed has its control characters escaped (``_text.py``).
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Iterator, Mapping, Sized
from typing import Any

from rich.text import Text

from daguerreo_actors._text import cut, escape_controls, is_control, safe_repr

OUTPUTS = ("summary", "json", "repr")
_NAME_LIMIT = 40


class NotJSONError(ValueError):
    """A ctx key or value that JSON cannot hold; names the key and where."""

    def __init__(self, key: object, where: str, why: str) -> None:
        self.key = key
        self.where = where
        self.why = why
        super().__init__(f"ctx key {_key_text(key)}: {why}" + (f" (at {where})" if where else ""))


# -- summary ------------------------------------------------------------------------


class _BoundedRepr(reprlib.Repr):
    """A repr that never builds more than about ``limit`` characters of a big value."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = max(limit, 10)
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 8
        self.maxdict = self.maxdeque = self.maxarray = 8
        self.maxlevel = 3

    def repr_bytes(self, value: bytes, level: int) -> str:
        return self._cut_bytes(value)

    def repr_bytearray(self, value: bytearray, level: int) -> str:
        return f"bytearray({self._cut_bytes(bytes(value[: self.maxstring]))})"

    def _cut_bytes(self, value: bytes) -> str:
        head = repr(value[: self.maxstring])
        return head if len(value) <= self.maxstring else head + "..."

    def repr_instance(self, value: object, level: int) -> str:
        # reprlib catches Exception only; a user __repr__ may raise anything.
        return cut(safe_repr(value), self.maxother)


def bounded_repr(value: object, limit: int) -> str:
    """A repr of ``value`` built to about ``limit`` characters (more may be cut after)."""
    try:
        return _BoundedRepr(limit).repr(value)
    except BaseException:  # noqa: BLE001 - e.g. an int too long to convert
        return f"<unprintable {type(value).__name__}>"


def size_of(value: object) -> str:
    """``5,242,880 bytes``, ``12 chars``, ``200,000 items``, or ``""``."""
    if isinstance(value, (bytes, bytearray)):
        return _count(len(value), "byte")
    if isinstance(value, str):
        return _count(len(value), "char")
    if isinstance(value, Sized):
        try:
            return _count(len(value), "item")
        except BaseException:  # noqa: BLE001 - a user __len__: anything goes
            return ""
    return ""


def _count(n: int, unit: str) -> str:
    return f"{n:,} {unit}{'' if n == 1 else 's'}"


def summary_lines(ctx: Mapping[Any, Any], width: int) -> Iterator[Text]:
    """One line per key: name, type, size, value; each at most ``width`` characters."""
    rows = [
        (_key_text(key, quote=False), escape_controls(type(value).__name__), size_of(value), value)
        for key, value in ctx.items()
    ]
    if not rows:
        yield Text("(the ctx is empty)", style="dim")
        return
    name_w = min(_NAME_LIMIT, max(len(r[0]) for r in rows))
    type_w = min(20, max(len(r[1]) for r in rows))
    size_w = max(len(r[2]) for r in rows)
    for name, type_name, size, value in rows:
        name = cut_middle(name, _NAME_LIMIT)
        head = f"{name:<{name_w}}  {cut_middle(type_name, 20):<{type_w}}  {size:>{size_w}}  "
        room = max(10, width - len(head))
        shown = escape_repr(bounded_repr(value, room))
        if len(shown) > room:
            shown = shown[: room - 1] + "\u2026"
        line = Text(no_wrap=True)
        line.append(f"{name:<{name_w}}", style="bold")
        line.append(f"  {cut_middle(type_name, 20):<{type_w}}", style="cyan")
        line.append(f"  {size:>{size_w}}  ", style="dim")
        line.append(shown)
        yield line


def cut_middle(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, an ellipsis in the middle if cut."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}\u2026{text[len(text) - (limit - 1 - half) :]}"


def _key_text(key: object, *, quote: bool = True) -> str:
    """A key as a person reads it: ``'name'`` (or ``name``); ``1 (int)`` if not a string."""
    if isinstance(key, str):
        return escape_controls(repr(key) if quote else key)
    return f"{escape_controls(safe_repr(key))} ({escape_controls(type(key).__name__)} key)"


def escape_repr(text: str) -> str:
    """A repr with its control and format characters escaped, backslashes kept.

    A repr escapes them itself; a user ``__repr__`` may not. Unlike
    :func:`escape_controls`, backslashes are not doubled: in a repr they
    are escapes already (``b'\\x00'`` stays as Python wrote it).
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for char in text:
        if is_control(char):
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code <= 0xFF
                else f"\\u{code:04x}"
                if code <= 0xFFFF
                else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    return "".join(out)


# -- json ---------------------------------------------------------------------------


def ctx_json(ctx: Mapping[Any, Any]) -> str:
    """The ctx as one JSON object (one line); raises NotJSONError for the first bad key."""
    parts: list[str] = []
    for key, value in ctx.items():
        if not isinstance(key, str):
            raise NotJSONError(key, "", "the key is not a string (JSON keys are strings)")
        check_json(key, value)
        try:
            dumped = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except RecursionError:
            raise NotJSONError(key, "", "the value is nested too deeply for JSON") from None
        except ValueError as exc:  # an int with more digits than Python writes
            raise NotJSONError(key, "", f"cannot be written as JSON: {exc}") from None
        parts.append(f"{json.dumps(key, ensure_ascii=False)}: {dumped}")
    return escape_json_controls("{" + ", ".join(parts) + "}")


#: Where in a value: None at the top, else (parent, "[0]" or "['name']").
_Path = tuple[Any, str] | None


def _where(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, part = path
        parts.append(part)
    return cut("".join(reversed(parts)), 200)


def check_json(key: str, value: object) -> None:
    """Raise NotJSONError if ``value`` (under ``key``) is not plain JSON.

    JSON here: dict with str keys, list, tuple (an array), str, int, finite
    float, bool, None. Walked without recursion (the path is built only for
    the message); a cycle is refused.
    """
    # (value, path, leaving): a container is pushed again to leave it.
    stack: list[tuple[Any, _Path, bool]] = [(value, None, False)]
    on_path: set[int] = set()
    while stack:
        item, path, leaving = stack.pop()
        kind = type(item)
        if leaving:
            on_path.discard(id(item))
        elif kind in (str, int, bool) or item is None:
            continue
        elif kind is float:
            if not math.isfinite(item):
                raise NotJSONError(key, _where(path), f"{item!r} is not JSON")
        elif kind in (dict, list, tuple):
            if id(item) in on_path:
                raise NotJSONError(key, _where(path), "the value contains itself (a cycle)")
            on_path.add(id(item))
            stack.append((item, path, True))
            if kind is dict:
                for k, v in item.items():
                    if type(k) is not str:
                        raise NotJSONError(
                            key, _where(path), f"the key {safe_repr(k)} is not a string"
                        )
                    stack.append((v, (path, f"[{k!r}]"), False))
            else:
                stack.extend((v, (path, f"[{i}]"), False) for i, v in enumerate(item))
        else:
            raise NotJSONError(key, _where(path), f"a value of type {kind.__name__} is not JSON")


def escape_json_controls(text: str) -> str:
    """JSON text with its control and format characters as ``\\uNNNN`` escapes.

    ``json.dumps(ensure_ascii=False)`` escapes only C0 controls; DEL, C1
    controls (CSI), bidi overrides, separators and lone surrogates from user
    values would reach the terminal raw. They can only sit inside JSON
    strings, where a ``\\u`` escape keeps the text valid JSON.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for char in text:
        if is_control(char):
            code = ord(char)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


# -- repr ---------------------------------------------------------------------------


def repr_lines(ctx: Mapping[Any, Any]) -> Iterator[Text]:
    """``key: repr(value)`` per key, in full, control characters escaped."""
    for key, value in ctx.items():
        yield Text(f"{escape_repr(safe_repr(key))}: {escape_repr(safe_repr(value))}")
