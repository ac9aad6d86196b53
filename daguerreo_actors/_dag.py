"""A :class:`Dag` of plain functions: parameters are inputs, the return value the output.

``@dag.task`` records a function; nothing is judged then. ``Dag.validate``
(and ``Dag.run``, which calls it) turns the records into plain
:class:`~daguerreo_actors.Task` objects, reporting every problem at once:
each task's field errors, a parameter no task produces and the initial ctx
lacks (``missing-input``), two tasks producing one key
(``duplicate-output``), a mapped function without its ``map_as`` parameter
(``invalid-field``), and whatever ``validate_tasks`` finds (cycles, names).

Each task's function is a :class:`DagFunction`: it calls the user's
function with its inputs read from the ctx by parameter name (``is_active``
given as itself, a mapped task's item as the ``map_as`` parameter) and
turns the return value into ``{name: value}``, or, with ``outputs``, a
tuple into one key each. A parameter produced by another task is a
dependency; a parameter with a default that nobody provides keeps it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from daguerreo_actors._errors import InvalidOutput, InvalidTasksError, TaskError
from daguerreo_actors._task import TASK_KEYS, Task
from daguerreo_actors._text import did_you_mean
from daguerreo_actors._validation import validate_tasks

if TYPE_CHECKING:
    from daguerreo_actors._job import Job

F = TypeVar("F", bound=Callable[..., Any])

#: What ``@dag.task(...)`` passes on to Task: every field it does not set itself.
_OPTIONS = tuple(
    k for k in TASK_KEYS if k not in ("name", "fn", "dependencies", "map_over", "map_as")
)

_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class DagFunction:
    """A dag task's ``fn(ctx, is_active)``: see the module docstring."""

    __slots__ = ("__wrapped__", "inputs", "map_as", "name", "outputs", "split", "wants_active")

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        wants_active: bool,
        map_as: str | None,
        split: bool,
    ) -> None:
        self.__wrapped__ = fn
        self.split = split  # ``outputs`` given: the function returns one value per key
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.wants_active = wants_active
        self.map_as = map_as

    def _arguments(self, ctx: Mapping[Any, Any], is_active: Callable[..., bool]) -> dict[str, Any]:
        kwargs = {key: ctx[key] for key in self.inputs if key in ctx}
        if self.map_as is not None:
            kwargs[self.map_as] = ctx[self.map_as]
        if self.wants_active:
            kwargs["is_active"] = is_active
        return kwargs

    def _output(self, value: Any) -> dict[str, Any] | InvalidOutput:
        outputs = self.outputs
        if not self.split:
            return {outputs[0]: value}
        if not isinstance(value, tuple | list) or len(value) != len(outputs):
            got = (
                f"{len(value)} values" if isinstance(value, tuple | list) else type(value).__name__
            )
            return InvalidOutput(
                value,
                f"task {self.name!r} declares outputs={outputs!r} and must return a tuple "
                f"of {len(outputs)} values, got {got}",
            )
        return dict(zip(outputs, value, strict=True))

    def __call__(self, ctx: Mapping[Any, Any], is_active: Callable[..., bool]) -> Any:
        return self._output(self.__wrapped__(**self._arguments(ctx, is_active)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.__wrapped__,
                self.name,
                self.inputs,
                self.outputs,
                self.wants_active,
                self.map_as,
                self.split,
            ),
        )


class AsyncDagFunction(DagFunction):
    """The same, for an ``async def`` function (it runs on the engine's event loop)."""

    __slots__ = ()

    async def __call__(self, ctx: Mapping[Any, Any], is_active: Callable[..., bool]) -> Any:
        return self._output(await self.__wrapped__(**self._arguments(ctx, is_active)))


@dataclasses.dataclass(frozen=True, slots=True)
class _Record:
    fn: Callable[..., Any]
    name: str | None
    outputs: Any
    map_over: Any
    map_as: Any
    options: dict[str, Any]


class Dag:
    """Tasks written as plain functions; see the module docstring and the README."""

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        #: The default ``run(name=...)`` of :meth:`run`.
        self.name = name
        self._records: list[_Record] = []

    def __repr__(self) -> str:
        return f"<Dag of {len(self._records)} tasks>"

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        outputs: Iterable[str] | None = None,
        map_over: str | None = None,
        map_as: str = "item",
        **task_options: Any,
    ) -> Callable[[F], F]: ...

    def task(  # type: ignore[misc]  # the bare form takes no options
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        outputs: Iterable[str] | None = None,
        map_over: str | None = None,
        map_as: str = "item",
        **task_options: Any,
    ) -> Any:
        """Record ``fn`` as a task (a decorator, bare or with options); returns ``fn``."""

        def record(function: F) -> F:
            self._records.append(
                _Record(function, name, outputs, map_over, map_as, dict(task_options))
            )
            return function

        return record if fn is None else record(fn)

    @property
    def tasks(self) -> list[Task]:
        """The plain :class:`Task` list (raises :class:`InvalidTasksError` like ``validate``)."""
        return list(self._build(None))

    def validate(self, ctx_keys: Iterable[Any] | None = ()) -> tuple[Task, ...]:
        """The tasks, checked against an initial ctx with ``ctx_keys``; every error at once.

        With ``ctx_keys=None`` (the ctx unknown), inputs are not checked.
        """
        return self._build(None if ctx_keys is None else set(ctx_keys))

    def run(self, *, ctx: Mapping[Any, Any] | None = None, **run_options: Any) -> Job:
        """``run(self.validate(ctx), ctx=ctx, ...)``: the options are ``run()``'s."""
        from daguerreo_actors._run import run

        if ctx is not None and not isinstance(ctx, Mapping):
            raise TypeError(f"ctx must be a mapping or None, got {type(ctx).__name__}")
        run_options.setdefault("name", self.name)
        return run(self.validate(() if ctx is None else ctx.keys()), ctx=ctx, **run_options)

    def _build(self, ctx_keys: set[Any] | None) -> tuple[Task, ...]:
        errors: list[TaskError] = []
        shapes = [_shape(record, errors) for record in self._records]
        producers: dict[str, list[str]] = {}
        for shape in shapes:
            for key in shape.outputs:
                producers.setdefault(key, []).append(shape.name)
        for key, names in producers.items():
            if len(names) > 1:
                errors.append(
                    TaskError(
                        "duplicate-output",
                        names[1],
                        f"output {key!r} is produced by {len(names)} tasks: "
                        + ", ".join(map(repr, names)),
                    )
                )
        known = set(producers) | (ctx_keys or set())
        known_names = {key for key in known if isinstance(key, str)}  # a ctx may hold others
        tasks: list[Task] = []
        for record, shape in zip(self._records, shapes, strict=True):
            needed = [(p, "parameter") for p in shape.required]
            read = list(shape.inputs)
            if isinstance(record.map_over, str):
                needed.append((record.map_over, "map_over"))
                read.append(record.map_over)
            dependencies = {producers[key][0] for key in read if key in producers}
            if ctx_keys is not None:
                for key, what in needed:
                    if key not in known:
                        field = f"parameter {key!r}" if what == "parameter" else f"map_over {key!r}"
                        errors.append(
                            TaskError(
                                "missing-input",
                                shape.name,
                                f"{field} is produced by no task and is not in the initial "
                                f"ctx{did_you_mean(key, known_names)}",
                            )
                        )
            options = {}
            for option, value in record.options.items():
                if option in _OPTIONS:
                    options[option] = value
                else:
                    errors.append(
                        TaskError(
                            "invalid-field",
                            shape.name,
                            f"unknown task option {option!r}{did_you_mean(option, _OPTIONS)} "
                            "(dependencies are inferred from the parameters)"
                            if option == "dependencies"
                            else f"unknown task option {option!r}{did_you_mean(option, _OPTIONS)}",
                        )
                    )
            try:
                tasks.append(
                    Task(
                        shape.name,
                        shape.function,
                        dependencies,
                        map_over=record.map_over,
                        map_as=record.map_as,
                        **options,
                    )
                )
            except InvalidTasksError as exc:
                errors.extend(exc.errors)
        try:
            validate_tasks(tasks)
        except InvalidTasksError as exc:
            errors.extend(exc.errors)
        if errors:
            raise InvalidTasksError(errors)
        return tuple(tasks)


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    name: str
    function: DagFunction
    inputs: tuple[str, ...]  # every parameter read from the ctx
    required: tuple[str, ...]  # those without a default
    outputs: tuple[str, ...]


def _shape(record: _Record, errors: list[TaskError]) -> _Shape:
    """What ``record``'s function reads and writes; its problems go to ``errors``."""
    fn = record.fn
    own = getattr(fn, "__name__", None)
    name = record.name if record.name is not None else own
    label = name if isinstance(name, str) and name else repr(fn)
    outputs: tuple[str, ...] = (own,) if isinstance(own, str) else ()
    if not isinstance(own, str) and (record.name is None or record.outputs is None):
        # A functools.partial, a callable object: repr() holds an address that
        # changes every run (a journal could never resume it).
        missing = " and ".join(
            f"{field}="
            for field, given in (("name", record.name), ("outputs", record.outputs))
            if given is None
        )
        errors.append(
            TaskError(
                "invalid-field",
                label,
                f"the function has no __name__ (a functools.partial?): give it {missing}",
            )
        )
    if record.outputs is not None:
        given = record.outputs
        if isinstance(given, str) or not isinstance(given, Iterable):
            errors.append(
                TaskError(
                    "invalid-field",
                    label,
                    f"field 'outputs' must be a tuple of str keys, got {given!r}",
                )
            )
        else:
            outputs = tuple(given)
            wrong = [key for key in outputs if not isinstance(key, str) or not key]
            if wrong or not outputs:
                errors.append(
                    TaskError(
                        "invalid-field",
                        label,
                        "field 'outputs' must be a non-empty tuple of non-empty str keys, "
                        f"got {given!r}",
                    )
                )
                outputs = tuple(key for key in outputs if isinstance(key, str) and key)
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        errors.append(TaskError("invalid-task", label, f"its signature cannot be read: {exc}"))
        parameters = []
    map_as = record.map_as if record.map_over is not None else None
    inputs: list[str] = []
    required: list[str] = []
    wants_active = False
    has_item = False
    for parameter in parameters:
        if parameter.kind not in _KINDS:
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                errors.append(
                    TaskError(
                        "invalid-task",
                        label,
                        f"parameter {parameter.name!r} is positional-only: inputs are "
                        "passed by name",
                    )
                )
            continue
        if parameter.name == "is_active":
            wants_active = True
        elif map_as is not None and parameter.name == map_as:
            has_item = True
        else:
            inputs.append(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
    if map_as is not None and not has_item and isinstance(map_as, str):
        errors.append(
            TaskError(
                "invalid-field",
                label,
                f"field 'map_as' is {map_as!r}, but the function has no parameter {map_as!r} "
                "to receive each item",
            )
        )
    kind = AsyncDagFunction if inspect.iscoroutinefunction(fn) else DagFunction
    function = kind(
        fn,
        label,
        tuple(inputs),
        outputs or ("",),
        wants_active,
        map_as if has_item else None,
        record.outputs is not None,
    )
    return _Shape(label, function, tuple(inputs), tuple(required), outputs)
