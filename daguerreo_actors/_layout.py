"""Where the report page draws each task of a DAG, left to right.

Two ways, one answer shape (each node's centre, in pixels, and the
picture's size):

- graphviz's ``dot`` (``-Tplain``), when it is on the PATH and the DAG has
  at most :data:`DOT_LIMIT` nodes: the best picture, but its time grows
  fast (measured on this project's 2-core VM, random DAGs, two dependencies
  per task: 500 nodes 0.7 s, 2,000 nodes 37 s);
- :func:`layered`, pure Python and linear apart from one sort per layer: a
  node's layer is the length of the longest dependency chain into it, its
  place in the layer the mean place of its dependencies (one barycentre
  sweep, ties in task order). A layer taller than :data:`WRAP` nodes wraps
  into side-by-side columns, and more than :data:`BAND` columns stack into
  bands, so a 10,000-task wide job or chain is a block, not a strip 10,000
  nodes long.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Sequence

#: The most nodes handed to dot; larger DAGs use :func:`layered`.
DOT_LIMIT = 500
#: Seconds dot may take before :func:`layered` is used instead.
DOT_TIMEOUT = 20.0
#: The most nodes one column of a layer holds before it wraps.
WRAP = 400
#: The most columns side by side; more (a long chain) stack in bands.
BAND = 120


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Node centres (``x[i]``, ``y[i]``), node size and the picture's size."""

    x: list[float]
    y: list[float]
    node_width: float
    node_height: float
    width: float
    height: float
    #: "dot" or "layered": which made it.
    method: str


def layout(dependencies: Sequence[Sequence[int]], *, labels: bool, method: str = "auto") -> Layout:
    """Lay out the DAG whose node ``i`` depends on ``dependencies[i]``.

    ``method`` is ``"auto"`` (dot where it is installed and the DAG small
    enough, else layered), ``"dot"`` or ``"layered"``.
    """
    if method not in ("auto", "dot", "layered"):
        raise ValueError(f"layout must be 'auto', 'dot' or 'layered', got {method!r}")
    width, height = (150.0, 24.0) if labels else (8.0, 8.0)
    if method == "dot" or (method == "auto" and len(dependencies) <= DOT_LIMIT):
        found = _dot(dependencies, width, height)
        if found is not None:
            return found
        if method == "dot":
            raise RuntimeError("graphviz's dot is not installed or failed (apt install graphviz)")
    return layered(dependencies, width, height)


def layers_of(dependencies: Sequence[Sequence[int]]) -> list[int]:
    """Each node's layer: 0 for a root, else 1 + the deepest dependency's."""
    count = len(dependencies)
    waiting = [len(deps) for deps in dependencies]
    dependents: list[list[int]] = [[] for _ in range(count)]
    for node, deps in enumerate(dependencies):
        for dep in deps:
            dependents[dep].append(node)
    layer = [0] * count
    ready = [node for node in range(count) if not waiting[node]]
    while ready:
        node = ready.pop()
        for after in dependents[node]:
            layer[after] = max(layer[after], layer[node] + 1)
            waiting[after] -= 1
            if not waiting[after]:
                ready.append(after)
    return layer


def layered(dependencies: Sequence[Sequence[int]], width: float, height: float) -> Layout:
    """The pure-Python layout; see the module docstring."""
    layer = layers_of(dependencies)
    by_layer: list[list[int]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for node, at in enumerate(layer):
        by_layer[at].append(node)
    place = [0.0] * len(dependencies)
    for members in by_layer:
        members.sort(
            key=lambda n: (
                sum(place[d] for d in dependencies[n]) / len(dependencies[n])
                if dependencies[n]
                else float(n),
                n,
            )
        )
        for position, node in enumerate(members):
            place[node] = float(position)
    gap_x, gap_y = (width * 0.5, height * 0.5)
    pitch_x, pitch_y = width + gap_x, height + gap_y
    spot = [(0, 0)] * len(dependencies)  # (column, row) of each node
    column = 0
    tallest = 0
    for members in by_layer:
        columns = max(1, -(-len(members) // WRAP))
        per_column = -(-len(members) // columns)
        tallest = max(tallest, per_column)
        for position, node in enumerate(members):
            spot[node] = (column + position // per_column, position % per_column)
        column += columns
    # More columns than a band holds (a long chain): the bands stack, top to bottom.
    band_columns = min(column, BAND)
    band_height = tallest * pitch_y + 2 * gap_y
    x = [(c % BAND) * pitch_x + width / 2 + gap_x for c, _r in spot]
    y = [(c // BAND) * band_height + r * pitch_y + height / 2 + gap_y for c, r in spot]
    return Layout(
        x,
        y,
        width,
        height,
        width=band_columns * pitch_x + gap_x,
        height=-(-column // BAND) * band_height,
        method="layered",
    )


def _dot(dependencies: Sequence[Sequence[int]], width: float, height: float) -> Layout | None:
    executable = shutil.which("dot")
    if executable is None:
        return None
    # Nodes by number: no task name reaches dot, so none needs quoting.
    lines = [
        "digraph{rankdir=LR;nslimit=2;mclimit=0.5;",
        f"node[shape=box,fixedsize=true,width={width / 72:.3f},height={height / 72:.3f}];",
    ]
    lines += [f"n{node};" for node in range(len(dependencies))]
    lines += [f"n{dep}->n{node};" for node, deps in enumerate(dependencies) for dep in deps]
    lines.append("}")
    try:
        done = subprocess.run(
            [executable, "-Tplain"],
            input="\n".join(lines),
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT,
            check=True,
        )
        return _parse_plain(done.stdout, len(dependencies), width, height)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _parse_plain(text: str, count: int, width: float, height: float) -> Layout:
    x = [0.0] * count
    y = [0.0] * count
    seen = 0
    graph_width = graph_height = 0.0
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "graph":
            graph_width, graph_height = float(parts[2]) * 72, float(parts[3]) * 72
        elif parts and parts[0] == "node":
            node = int(parts[1][1:])
            x[node] = float(parts[2]) * 72 + width / 2
            y[node] = graph_height - float(parts[3]) * 72 + height / 2  # dot's y points up
            seen += 1
    if seen != count:
        raise ValueError(f"dot placed {seen} of {count} nodes")
    return Layout(x, y, width, height, graph_width + width, graph_height + height, method="dot")
