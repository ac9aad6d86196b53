"""to_mermaid and to_dot: the DAG as text, with every task name quoted safely."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from conftest import examples
from helpers import noop
from helpers import unsafe_chars as unsafe
from hypothesis import given, settings
from hypothesis import strategies as st

from daguerreo_actors import InvalidTasksError, Task, to_dot, to_mermaid

DIAMOND: list[Task | Mapping[str, Any]] = [
    Task("root", noop),
    Task("left", noop, dependencies=["root"]),
    {"name": "right", "fn": noop, "dependencies": ["root"]},
    Task("sink", noop, dependencies=["left", "right"], continue_on_failure=True),
]


def test_to_mermaid_draws_a_flowchart_with_edges_along_the_data() -> None:
    assert to_mermaid(DIAMOND) == (
        "flowchart LR\n"
        '    n0["root"]\n'
        '    n1["left"]\n'
        '    n2["right"]\n'
        '    n3["sink"]:::optional\n'
        "    n0 --> n1\n"
        "    n0 --> n2\n"
        "    n1 --> n3\n"
        "    n2 --> n3\n"
        "    classDef optional stroke-dasharray: 4 3\n"
    )


def test_to_dot_draws_a_digraph_with_edges_along_the_data() -> None:
    assert to_dot(DIAMOND) == (
        "digraph dag {\n"
        "    rankdir=LR;\n"
        "    node [shape=box];\n"
        '    n0 [label="root"];\n'
        '    n1 [label="left"];\n'
        '    n2 [label="right"];\n'
        '    n3 [label="sink", style=dashed];\n'
        "    n0 -> n1;\n"
        "    n0 -> n2;\n"
        "    n1 -> n3;\n"
        "    n2 -> n3;\n"
        "}\n"
    )


def test_without_optional_tasks_there_is_no_optional_style() -> None:
    tasks = [Task("a", noop)]
    assert "classDef" not in to_mermaid(tasks)
    assert "dashed" not in to_dot(tasks)
    assert to_mermaid([]) == "flowchart LR\n"


def test_quotes_brackets_and_backslashes_cannot_break_out_of_a_label() -> None:
    name = 'a"]; n9["x<b>&c\\d'
    tasks = [Task(name, noop)]
    assert '    n0["a#quot;]; n9[#quot;x#lt;b#gt;#amp;c\\\\d"]\n' in to_mermaid(tasks)
    assert '    n0 [label="a\\"]; n9[\\"x<b>&c\\\\\\\\d"];\n' in to_dot(tasks)


def test_a_mermaid_entity_code_in_a_name_is_shown_as_written() -> None:
    # "#quot;" typed in a name must not turn into a quote when rendered.
    label = to_mermaid([Task("say #quot;hi#quot;", noop)]).splitlines()[1]
    assert label == '    n0["say #35;quot;hi#35;quot;"]'


def test_invalid_tasks_are_rejected() -> None:
    tasks = [Task("a", noop, dependencies=["missing"])]
    with pytest.raises(InvalidTasksError):
        to_mermaid(tasks)
    with pytest.raises(InvalidTasksError):
        to_dot(tasks)


names = st.one_of(
    st.text(min_size=1, max_size=20),
    st.lists(
        st.sampled_from(
            ["\x1b[31m", "\u202e", "\r", "\x07", "\n", "\u2028", '"', "\\", "]", "#", ";", "a"]
        ),
        min_size=1,
        max_size=8,
    ).map("".join),
)

# One node line of each format. In a DOT label a backslash escapes the next
# character, so a quote may appear inside only as \".
DOT_NODE = re.compile(r'    n(\d+) \[label="((?:[^"\\]|\\.)*)"(, style=dashed)?\];')
MERMAID_NODE = re.compile(r'    n(\d+)\["([^"]*)"\](:::optional)?')


@settings(max_examples=examples(200))
@given(st.lists(names, min_size=1, max_size=6, unique=True))
def test_any_names_give_one_safe_label_per_line(task_names: list[str]) -> None:
    tasks = [
        Task(name, noop, dependencies=task_names[:i][-1:]) for i, name in enumerate(task_names)
    ]
    edges = len(tasks) - 1

    dot = to_dot(tasks)
    assert unsafe(dot) == []
    lines = dot.splitlines()
    assert len(lines) == 3 + len(tasks) + edges + 1
    nodes = lines[3 : 3 + len(tasks)]
    for node, line in enumerate(nodes):
        match = DOT_NODE.fullmatch(line)
        assert match is not None, line
        assert match.group(1) == str(node)
        # Every quote inside the label is escaped: the label's quotes balance.
        assert re.sub(r"\\.", "", match.group(2)).count('"') == 0
    assert all(re.fullmatch(r"    n\d+ -> n\d+;", line) for line in lines[3 + len(tasks) : -1])

    mermaid = to_mermaid(tasks)
    assert unsafe(mermaid) == []
    lines = mermaid.splitlines()
    assert len(lines) == 1 + len(tasks) + edges
    for node, line in enumerate(lines[1 : 1 + len(tasks)]):
        match = MERMAID_NODE.fullmatch(line)
        assert match is not None, line
        assert match.group(1) == str(node)
