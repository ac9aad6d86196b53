"""The integer graph helpers: build_adjacency and the iterative cycle search."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from daguerreo_actors._graph import build_adjacency, find_cycles

Edges = list[list[int]]


# -- brute force references ------------------------------------------------


def reachable_from(edges: Sequence[Sequence[int]], start: int) -> set[int]:
    """Nodes reachable from ``start`` by one edge or more (``start`` only if on a cycle)."""
    seen: set[int] = set()
    todo = list(edges[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges[node])
    return seen


def cyclic_components(edges: Sequence[Sequence[int]]) -> set[frozenset[int]]:
    """The strongly connected components that contain a cycle, by brute force."""
    reach = [reachable_from(edges, node) for node in range(len(edges))]
    return {
        frozenset(j for j in reach[i] if i in reach[j]) for i in range(len(edges)) if i in reach[i]
    }


def shortest_cycle_length(edges: Sequence[Sequence[int]], start: int) -> int:
    """Edges in a shortest cycle through ``start`` (breadth first, whole graph)."""
    distance = {start: 0}
    frontier = [start]
    while frontier:
        following: list[int] = []
        for node in frontier:
            for nxt in edges[node]:
                if nxt == start:
                    return distance[node] + 1
                if nxt not in distance:
                    distance[nxt] = distance[node] + 1
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def assert_is_cycle(edges: Sequence[Sequence[int]], cycle: Sequence[int]) -> None:
    """``cycle`` is a closed simple walk following the edges."""
    assert len(cycle) >= 2, cycle
    assert cycle[0] == cycle[-1], cycle
    assert len(set(cycle[:-1])) == len(cycle) - 1, f"a node repeats in {cycle}"
    for node, nxt in itertools.pairwise(cycle):
        assert nxt in edges[node], f"{node} -> {nxt} is not an edge of {cycle}"


# -- strategies --------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 8) -> Edges:
    """Any small directed graph: self loops and repeated edges included."""
    n = draw(st.integers(min_value=0, max_value=max_nodes))
    targets = st.lists(st.integers(min_value=0, max_value=max(n - 1, 0)), max_size=4)
    return [draw(targets) if n else [] for _ in range(n)]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 10) -> Edges:
    """A directed acyclic graph whose topological order is a random permutation."""
    n = draw(st.integers(min_value=0, max_value=max_nodes))
    order = draw(st.permutations(range(n)))
    edges: Edges = [[] for _ in range(n)]
    for rank in range(1, n):
        earlier = draw(st.lists(st.integers(min_value=0, max_value=rank - 1), max_size=4))
        edges[order[rank]] = [order[k] for k in earlier]
    return edges


# -- build_adjacency -----------------------------------------------------------


def test_build_adjacency_of_no_nodes_is_empty() -> None:
    assert build_adjacency([]) == ()


def test_build_adjacency_inverts_dependencies_into_dependents_in_node_order() -> None:
    # 0 depends on nothing, 1 and 2 on 0, 3 on 2 and 0.
    assert build_adjacency([[], [0], [0], [2, 0]]) == ((1, 2, 3), (), (3,), ())


@given(graphs())
def test_build_adjacency_is_the_exact_inverse_of_the_dependency_lists(edges: Edges) -> None:
    dependents = build_adjacency(edges)
    assert len(dependents) == len(edges)
    forward = Counter((node, dep) for node, deps in enumerate(edges) for dep in deps)
    backward = Counter((node, dep) for dep, nodes in enumerate(dependents) for node in nodes)
    assert forward == backward
    for nodes in dependents:
        assert list(nodes) == sorted(nodes)


# -- find_cycles: examples -----------------------------------------------------


def test_no_nodes_have_no_cycles() -> None:
    assert find_cycles([]) == []


def test_a_diamond_is_not_a_cycle() -> None:
    assert find_cycles([[], [0], [0], [1, 2]]) == []


def test_a_self_loop_is_a_cycle_of_one_node() -> None:
    assert find_cycles([[], [1]]) == [[1, 1]]


def test_two_nodes_pointing_at_each_other_are_one_cycle() -> None:
    assert find_cycles([[1], [0]]) == [[0, 1, 0]]


def test_a_cycle_follows_the_edge_direction() -> None:
    assert find_cycles([[1], [2], [0]]) == [[0, 1, 2, 0]]
    assert find_cycles([[2], [0], [1]]) == [[0, 2, 1, 0]]


def test_a_cycle_starts_at_its_lowest_node_even_when_the_search_enters_it_elsewhere() -> None:
    # The search starts at 0, which only leads into the cycle 3 -> 1 -> 2 -> 3.
    assert find_cycles([[3], [2], [3], [1]]) == [[1, 2, 3, 1]]


def test_nodes_leading_into_a_cycle_are_not_part_of_it() -> None:
    assert find_cycles([[1], [2], [1], [0]]) == [[1, 2, 1]]


def test_two_disjoint_cycles_are_both_reported_in_order_of_their_first_node() -> None:
    # 3 -> 4 -> 3 and 0 -> 2 -> 0, with 1 linking them but on neither.
    edges = [[2], [0, 3], [0], [4], [3]]
    assert find_cycles(edges) == [[0, 2, 0], [3, 4, 3]]


def test_one_cycle_is_reported_per_strongly_connected_component() -> None:
    # A figure eight: 0 -> 1 -> 0 and 0 -> 2 -> 0 share node 0.
    cycles = find_cycles([[1, 2], [0], [0]])
    assert len(cycles) == 1
    assert cycles[0] in ([0, 1, 0], [0, 2, 0])


def test_the_reported_cycle_is_a_shortest_one_through_the_first_node() -> None:
    # 0 -> 1 -> 2 -> 3 -> 0 and the shortcut 0 -> 3.
    assert find_cycles([[1, 3], [2], [3], [0]]) == [[0, 3, 0]]


def test_a_100k_node_cycle_is_found_without_recursion() -> None:
    n = 100_000
    cycle = find_cycles([[(node + 1) % n] for node in range(n)])
    assert cycle == [[*range(n), 0]]


def test_a_100k_node_chain_has_no_cycle() -> None:
    assert find_cycles([[node + 1] if node + 1 < 100_000 else [] for node in range(100_000)]) == []


def test_a_dense_big_component_is_searched_in_linear_time() -> None:
    # Every node points at the next and back at 0: one component, 2n edges.
    # A search that rescans its stack or the component per edge would be
    # quadratic here and hit the test timeout.
    n = 50_000
    edges = [[(node + 1) % n, 0] for node in range(n)]
    assert find_cycles(edges) == [[0, 0]]
    edges[0] = [1]  # without the self loop, the shortest cycle is 0 -> 1 -> 0
    assert find_cycles(edges) == [[0, 1, 0]]


# -- find_cycles: properties -------------------------------------------------


@given(graphs())
def test_find_cycles_reports_one_true_cycle_per_cyclic_component(edges: Edges) -> None:
    cycles = find_cycles(edges)
    components = cyclic_components(edges)
    assert len(cycles) == len(components)
    found: set[frozenset[int]] = set()
    for cycle in cycles:
        assert_is_cycle(edges, cycle)
        (component,) = [c for c in components if cycle[0] in c]
        assert set(cycle) <= component
        assert cycle[0] == min(component)
        assert len(cycle) - 1 == shortest_cycle_length(edges, cycle[0])
        found.add(component)
    assert found == components
    assert [c[0] for c in cycles] == sorted(c[0] for c in cycles)


@given(dags())
def test_a_dag_never_reports_a_cycle(edges: Edges) -> None:
    assert find_cycles(edges) == []


@given(dags(), st.data())
def test_adding_a_back_edge_to_a_dag_always_makes_exactly_one_cycle_through_it(
    edges: Edges, data: st.DataObject
) -> None:
    if not edges:
        edges = [[]]
    start = data.draw(st.integers(min_value=0, max_value=len(edges) - 1), label="start")
    end = data.draw(st.sampled_from(sorted(reachable_from(edges, start) | {start})), label="end")
    edges[end] = [*edges[end], start]
    cycles = find_cycles(edges)
    assert len(cycles) == 1
    cycle = cycles[0]
    assert_is_cycle(edges, cycle)
    # Every cycle of a DAG plus one edge uses that edge.
    assert (end, start) in itertools.pairwise(cycle)
