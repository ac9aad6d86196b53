"""What every ``daguerreo-actors`` command shares: the group, consoles, exit codes, loading.

Everything printed that comes from user code or from a log (task names,
messages) has its control characters escaped, and goes to the terminal as
plain ``rich.text.Text``, never as markup.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from daguerreo_actors._errors import InvalidTasksError
from daguerreo_actors._task import Task
from daguerreo_actors._text import escape_controls
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
    """Import MODULE:ATTR; call ATTR if it is a zero-argument function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:ATTR, got {spec!r}", param_hint="TASKS")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="TASKS"
        ) from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise click.BadParameter(
                f"{module_name!r} has no attribute {attr!r}", param_hint="TASKS"
            ) from exc
    if callable(value) and not isinstance(value, (list, tuple, Task)):
        value = value()
    return value


def validated(spec: str) -> tuple[Task, ...] | None:
    tasks = load_tasks(spec)
    try:
        return validate_tasks(tasks)
    except InvalidTasksError as error:
        print_errors(error)
        return None
    except TypeError as error:
        err_console().print(Text(escape_controls(str(error)), style="red"))
        return None


def print_errors(error: InvalidTasksError) -> None:
    console = err_console()
    count = len(error.errors)
    console.print(Text(f"{count} error{'' if count == 1 else 's'} in tasks:", style="bold red"))
    for item in error.errors:
        console.print(Text(f"  - {escape_controls(str(item))}"))


def fail(message: str) -> NoReturn:
    err_console().print(Text(escape_controls(message), style="red"))
    sys.exit(EXIT_INVALID)
