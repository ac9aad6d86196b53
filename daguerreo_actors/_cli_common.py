"""What every ``daguerreo-actors`` command shares: the group, consoles, exit codes, loading.

Everything printed that comes from user code or from a log (task names,
messages) has its control characters escaped, and goes to the terminal as
plain ``rich.text.Text``, never as markup.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from daguerreo_actors._dag import Dag
from daguerreo_actors._errors import InvalidTasksError
from daguerreo_actors._task import Task
from daguerreo_actors._text import escape_controls, short_message
from daguerreo_actors._validation import validate_tasks

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130

STATE_STYLES = {
    "completed": "green",
    "running": "cyan",
    "ready": "blue",
    "exception": "red",
    "failed": "bold red",
    "invalid_result": "bold magenta",
    "timed_out": "yellow",
    "cancelled": "dim yellow",
    "skipped": "dim",
    "idle": "dim",
    "unscheduled": "dim",
}


def out_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daguerreo-actors")
def main() -> None:
    """Run and inspect DAGs of tasks (daguerreo_actors)."""


# -- loading tasks ------------------------------------------------------------------


def load_tasks(spec: str) -> Any:
    """Import MODULE:ATTR; call ATTR if it is a function (it must need no arguments).

    A :class:`Dag` stands for its tasks.

    MODULE is a dotted module name, found from the current directory too,
    or a path to a ``.py`` file (``examples/smoothie.py:TASKS``). Every way
    this can go wrong is a usage error (exit 2) that says which and why.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise _bad(f"expected MODULE:ATTR, got {spec!r}")
    module = _import(module_name)
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise _bad(f"{module_name!r} has no attribute {attr!r}") from exc
    if callable(value) and not isinstance(value, (list, tuple, Task)):
        value = _call_factory(spec, value)
    return value


def _bad(message: str) -> click.BadParameter:
    return click.BadParameter(escape_controls(message), param_hint="MODULE:ATTR")


def _import(module_name: str) -> Any:
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        return _import_path(module_name)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise _bad(f"cannot import {module_name!r}: {exc}") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _bad(f"importing {module_name!r} raised {_describe(exc)}") from exc


def _import_path(path: str) -> Any:
    """A module from a ``.py`` file, its directory put on sys.path (for its own imports)."""
    import importlib.util

    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise _bad(f"cannot import {path!r}: no such file")
    name = os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None or not name.isidentifier():
        raise _bad(f"cannot import {path!r}: not a Python module file")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(file)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    # Registered before it runs, as import does: dataclasses and pickle look it up.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        del sys.modules[name]
        raise
    except BaseException as exc:
        del sys.modules[name]
        raise _bad(f"importing {path!r} raised {_describe(exc)}") from exc
    return module


def _call_factory(spec: str, factory: Any) -> Any:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        needed = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if needed:
            raise _bad(
                f"{spec} is a function that needs arguments ({', '.join(needed)}); "
                "give a task list, or a function that needs none"
            )
    try:
        return factory()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _bad(f"calling {spec} raised {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {short_message(exc, 300)}"


def validated(spec: str) -> tuple[Task, ...] | None:
    """The task list MODULE:ATTR, validated; None (errors printed) if invalid."""
    tasks = load_tasks(spec)
    try:
        if isinstance(tasks, Dag):
            return tasks.validate(None)  # the ctx is not known yet
        return validate_tasks(tasks)
    except InvalidTasksError as error:
        print_errors(error)
        return None
    except TypeError as error:
        # Not a task list at all: a usage error, like a wrong MODULE:ATTR.
        raise _bad(f"{spec} is not a task list: {error}") from error


def print_errors(error: InvalidTasksError) -> None:
    console = err_console()
    count = len(error.errors)
    console.print(Text(f"{count} error{'' if count == 1 else 's'} in tasks:", style="bold red"))
    for item in error.errors:
        console.print(Text(f"  - {escape_controls(str(item))}"))


def fail(message: str) -> NoReturn:
    err_console().print(Text(escape_controls(message), style="red"))
    sys.exit(EXIT_INVALID)
