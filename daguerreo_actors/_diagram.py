"""The DAG as text: Mermaid flowcharts and Graphviz DOT.

Edges point the way data flows, from a dependency to the task that needs
it. Task names are user text, so both writers quote them: nodes get
generated ids (``n0``, ``n1``, ...) and the name appears only inside a
quoted label, with quotes, backslashes and control characters escaped, so
no name can break out of its label or inject syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from daguerreo_actors._task import Task
from daguerreo_actors._text import escape_controls
from daguerreo_actors._validation import build_graph


def to_mermaid(tasks: Iterable[Task | Mapping[str, Any]]) -> str:
    """A Mermaid ``flowchart LR`` of ``tasks`` (validated first)."""
    validated, graph = build_graph(tasks)
    lines = ["flowchart LR"]
    for node, task in enumerate(validated):
        style = ":::optional" if task.continue_on_failure else ""
        lines.append(f'    n{node}["{_mermaid_label(task.name)}"]{style}')
    for node, deps in enumerate(graph.dependencies):
        for dep in deps:
            lines.append(f"    n{dep} --> n{node}")
    if any(task.continue_on_failure for task in validated):
        lines.append("    classDef optional stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def to_dot(tasks: Iterable[Task | Mapping[str, Any]]) -> str:
    """A Graphviz ``digraph`` of ``tasks`` (validated first)."""
    validated, graph = build_graph(tasks)
    lines = ["digraph dag {", "    rankdir=LR;", "    node [shape=box];"]
    for node, task in enumerate(validated):
        style = ", style=dashed" if task.continue_on_failure else ""
        lines.append(f'    n{node} [label="{_dot_label(task.name)}"{style}];')
    for node, deps in enumerate(graph.dependencies):
        for dep in deps:
            lines.append(f"    n{dep} -> n{node};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_label(name: str) -> str:
    # Mermaid reads entity codes inside quoted labels; these characters
    # would otherwise end the label or be read as markup. "#" goes first
    # (as its own code), so a name holding "#quot;" is shown as written.
    text = escape_controls(name)
    for char, code in (
        ("#", "#35;"),
        ("&", "#amp;"),
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
    ):
        text = text.replace(char, code)
    return text


def _dot_label(name: str) -> str:
    return escape_controls(name).replace("\\", "\\\\").replace('"', '\\"')
