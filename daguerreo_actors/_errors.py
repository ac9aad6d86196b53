"""Errors raised for bad tasks.

Validation never stops at the first problem: it collects every
:class:`TaskError` and raises one :class:`InvalidTasksError` carrying them
all, so a user fixes a task list in one round trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

#: Every error code validation can report.
ERROR_CODES: frozenset[str] = frozenset(
    {
        "invalid-task",
        "invalid-field",
        "duplicate-name",
        "missing-dependencies",
        "dependency-cycle",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskError:
    """One problem found in a task list.

    ``code`` is one of :data:`ERROR_CODES`, ``task`` the name of the task it
    concerns (None when the task has no usable name), ``message`` a sentence
    for a person.
    """

    code: str
    task: str | None
    message: str

    def __str__(self) -> str:
        where = "" if self.task is None else f"task {self.task!r}: "
        return f"[{self.code}] {where}{self.message}"


class InvalidTasksError(ValueError):
    """The task list (or one task) is invalid; ``errors`` lists every problem."""

    errors: list[TaskError]

    def __init__(self, errors: Iterable[TaskError]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        n = len(self.errors)
        head = f"{n} error{'' if n == 1 else 's'} in tasks:"
        lines = [head]
        for error in self.errors:
            text = str(error).replace("\n", "\n    ")
            lines.append(f"  - {text}")
        return "\n".join(lines)

    def __reduce__(self) -> tuple[type[InvalidTasksError], tuple[list[TaskError]]]:
        return (type(self), (self.errors,))


class InternalError(RuntimeError):
    """A bug inside daguerreo_actors itself, not in the user's tasks.

    A job that hits one ends FAILED with this as its ``exception``; please
    report it with the chained cause.
    """


class NotPicklableError(TypeError):
    """A task's function, ctx or result cannot cross to another process.

    The message names the task and the offending ctx or result key.
    """


class TaskInterrupted(BaseException):
    """Raised inside a thread task with ``interrupt=True`` that outlived ``kill_after``.

    A BaseException, so an ``except Exception`` in the task does not swallow
    it; ``finally`` blocks still run. It cannot interrupt a blocking system
    call (it arrives when the call returns to Python code).
    """


class RemoteTaskError(Exception):
    """What a task raised in another process (or on a Dask worker) that could not be pickled.

    ``type_name`` is the original exception's qualified type name (say
    ``urllib.error.HTTPError``), ``message`` its message, ``remote_traceback``
    the traceback as formatted where it was raised. Exceptions that can be
    pickled come back as themselves; this one always can.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"

    def __reduce__(self) -> tuple[type[RemoteTaskError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class InvalidOutput:
    """What a task function hands back in place of an output it could not make:
    the value it got and why (a dag task whose tuple has the wrong length).
    The TaskActor makes it INVALID_RESULT, never retried. Picklable."""

    __slots__ = ("reason", "value")

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (InvalidOutput, (self.value, self.reason))


def invalid_result_message(task: str, value: object, *, with_value: bool = False) -> str:
    """What a person reads when a task returned something that is not a mapping.

    ``with_value`` adds a cut repr of the value (a result, so only where the
    user asked for values: ``log_values=True``, their own terminal).
    """
    if value is None:
        return (
            f"task {task!r} returned None; a task must return a mapping (return {{}} for no output)"
        )
    text = (
        f"task {task!r} returned a {type(value).__name__}, not a mapping; "
        "a task must return a mapping"
    )
    if with_value:
        from daguerreo_actors._text import cut, safe_repr

        text += f": {cut(safe_repr(value), 200)}"
    return text


class JournalError(RuntimeError):
    """The journal cannot be opened, read or written, or is held by another process."""


class SerializationError(TypeError):
    """A task's output cannot be serialized for the journal; the message names the key."""
