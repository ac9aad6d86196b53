"""Making untrusted text (task names, messages from logs) safe to print.

A task name or an exception message can hold control characters: an ESC
sequence could recolour a terminal, move its cursor or set its title, and
bidirectional overrides can make text read differently than it is. Every
place that prints such text goes through :func:`escape_controls`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

#: Unicode categories never printed raw: controls, format characters (which
#: cover the bidi overrides), surrogates, line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_control(char: str) -> bool:
    """True for a character :func:`escape_controls` escapes (a backslash aside)."""
    return unicodedata.category(char) in CONTROL_CATEGORIES


def escape_controls(text: str) -> str:
    """Replace control and format characters with visible escapes.

    C0/C1 controls, DEL, Unicode format characters (category Cc or Cf,
    which covers the bidi overrides), line and paragraph separators and lone
    surrogates (which a JSON ``\\ud800`` escape or an undecodable byte read
    with ``surrogateescape`` produce, and no encoder can print) become
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; a backslash is doubled so the
    result reads unambiguously. Everything else, non-ASCII letters included,
    is kept as is.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in CONTROL_CATEGORIES:
            code = ord(char)
            if code <= 0xFF:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder if its ``__str__`` raises."""
    try:
        return str(value)
    except BaseException:  # noqa: BLE001 - user objects: anything goes
        return f"<unprintable {type(value).__name__}>"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder if its ``__repr__`` raises."""
    try:
        return repr(value)
    except BaseException:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


def cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 40)  # room for the note
    return f"{text[:kept]}... [{len(text) - kept} more characters]"


def progress_text(value: object) -> str:
    """How an attempt's ``is_active(progress)`` value is shown: a short repr."""
    if type(value) is str:
        return cut(value, 100)
    return cut(safe_repr(value), 100)


def short_message(exc: BaseException, limit: int = 500) -> str:
    """An exception's message, safely and cut (it runs the exception's ``__str__``)."""
    return cut(safe_str(exc), limit)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    if not isinstance(word, str):
        return ""
    import difflib

    guess = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {guess[0]!r}?)" if guess else ""
