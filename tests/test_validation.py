"""validate_tasks: every problem in a task list, reported at once."""

from __future__ import annotations

import itertools
import math
import pickle
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import pytest
from helpers import noop
from hypothesis import given
from hypothesis import strategies as st

from daguerreo_actors import InvalidTasksError, Task, TaskError, validate_tasks
from daguerreo_actors._errors import ERROR_CODES

TaskLike = Task | Mapping[str, Any]


def task(name: str, *deps: str, **fields: Any) -> Task:
    return Task(name, noop, deps, **fields)


def errors_of(tasks: Sequence[TaskLike]) -> list[TaskError]:
    """The errors validate_tasks raises for ``tasks`` (it must raise)."""
    with pytest.raises(InvalidTasksError) as caught:
        validate_tasks(tasks)
    errors = caught.value.errors
    assert errors, "raised with no errors"
    assert {e.code for e in errors} <= ERROR_CODES
    return errors


def only_error(tasks: Sequence[TaskLike]) -> TaskError:
    errors = errors_of(tasks)
    assert len(errors) == 1, errors
    return errors[0]


def codes(errors: Sequence[TaskError]) -> Counter[str]:
    return Counter(e.code for e in errors)


CHAIN = re.compile(r"\S+(?: -> \S+)+")


def cycle_in(error: TaskError) -> list[str]:
    """The names of the cycle a dependency-cycle message shows."""
    assert error.code == "dependency-cycle"
    (chain,) = CHAIN.findall(error.message)
    return chain.split(" -> ")


# -- valid lists ----------------------------------------------------------------


def test_an_empty_task_list_is_valid() -> None:
    assert validate_tasks([]) == ()


def test_valid_tasks_come_back_as_a_tuple_in_the_given_order() -> None:
    tasks = [task("c", "a", "b"), task("a"), task("b", "a")]
    result = validate_tasks(tasks)
    assert type(result) is tuple
    assert result == tuple(tasks)


def test_any_iterable_of_tasks_is_accepted() -> None:
    tasks = [task("a"), task("b", "a")]
    assert validate_tasks(t for t in tasks) == tuple(tasks)
    assert validate_tasks(tuple(tasks)) == tuple(tasks)


def test_a_mapping_is_converted_to_the_same_task() -> None:
    mapping = {
        "name": "b",
        "fn": noop,
        "dependencies": ["a"],
        "timeout": 3,
        "max_retries": 2,
        "continue_on_failure": True,
    }
    result = validate_tasks([task("a"), mapping])
    assert result == (task("a"), Task("b", noop, frozenset({"a"}), 3.0, 2, True))
    assert all(type(t) is Task for t in result)
    assert type(result[1].timeout) is float


def test_a_mapping_needs_only_name_and_fn() -> None:
    assert validate_tasks([{"name": "a", "fn": noop}]) == (task("a"),)


def test_any_mapping_type_is_a_task_mapping() -> None:
    result = validate_tasks([MappingProxyType({"name": "a", "fn": noop})])
    assert result == (task("a"),)


def test_a_mapping_with_a_generator_of_dependencies_keeps_them() -> None:
    tasks = [{"name": "a", "fn": noop, "dependencies": (d for d in ["b"])}, task("b")]
    assert validate_tasks(tasks)[0].dependencies == frozenset({"b"})


def test_a_generator_of_dependencies_on_a_missing_task_is_still_checked() -> None:
    error = only_error([{"name": "a", "fn": noop, "dependencies": (d for d in ["b"])}])
    assert error.code == "missing-dependencies"


# -- not a list -------------------------------------------------------------------


@pytest.mark.parametrize(
    "single",
    [task("a"), {"name": "a", "fn": noop}],
    ids=["Task", "mapping"],
)
def test_a_single_task_is_a_type_error_telling_to_wrap_it_in_a_list(single: TaskLike) -> None:
    with pytest.raises(TypeError, match=r"wrap .* in a list"):
        validate_tasks(single)  # type: ignore[arg-type]


@pytest.mark.parametrize("tasks", ["ab", b"ab", 3, None], ids=repr)
def test_a_non_list_is_a_type_error(tasks: object) -> None:
    with pytest.raises(TypeError, match="iterable"):
        validate_tasks(tasks)  # type: ignore[arg-type]


# -- the error itself ---------------------------------------------------------------


def test_the_error_is_a_value_error_counting_its_errors() -> None:
    with pytest.raises(ValueError, match=r"^2 errors in tasks:") as caught:
        validate_tasks([task("a", "x"), task("b", "y")])
    assert isinstance(caught.value, InvalidTasksError)


def test_one_error_is_counted_in_the_singular() -> None:
    with pytest.raises(InvalidTasksError, match=r"^1 error in tasks:\n"):
        validate_tasks([task("a", "x")])


def test_the_error_text_gives_each_error_with_its_code_task_and_message() -> None:
    with pytest.raises(InvalidTasksError) as caught:
        validate_tasks([task("alpha", "ghost"), task("beta"), task("beta")])
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 errors in tasks:"
    body = lines[1:]
    assert len(body) == 2
    missing = next(line for line in body if "missing-dependencies" in line)
    assert "'alpha'" in missing
    assert "ghost" in missing
    duplicate = next(line for line in body if "duplicate-name" in line)
    assert "'beta'" in duplicate


# -- ported from the Clojure library's validation test --------------------------------


def test_a_missing_dependency_is_one_error_naming_it() -> None:
    error = only_error([task("a", "b")])
    assert error.code == "missing-dependencies"
    assert error.task == "a"
    assert "'b'" in error.message


def test_a_continue_on_failure_task_may_have_dependents() -> None:
    # Its all_completed dependents become UPSTREAM_FAILED if it fails.
    tasks = [task("a", "b"), task("b", continue_on_failure=True)]
    assert validate_tasks(tasks) == tuple(tasks)


def test_two_tasks_depending_on_each_other_are_a_cycle() -> None:
    error = only_error([task("a", "b"), task("b", "a")])
    assert error.code == "dependency-cycle"
    assert "a -> b -> a" in error.message
    assert cycle_in(error) == ["a", "b", "a"]


def test_a_three_task_cycle_is_shown_in_depends_on_order() -> None:
    error = only_error([task("a", "b"), task("b", "c"), task("c", "a")])
    assert "a -> b -> c -> a" in error.message
    assert cycle_in(error) == ["a", "b", "c", "a"]


# -- each code ------------------------------------------------------------------------


def test_a_cycle_starts_at_the_task_first_in_the_list() -> None:
    error = only_error([task("z", "x"), task("x", "y"), task("y", "z")])
    assert cycle_in(error) == ["z", "x", "y", "z"]


def test_a_self_dependency_is_a_cycle() -> None:
    error = only_error([task("b"), task("a", "a", "b")])
    assert error.code == "dependency-cycle"
    assert cycle_in(error) == ["a", "a"]


def test_the_cycle_shows_bare_names() -> None:
    error = only_error([task("first", "second"), task("second", "first")])
    assert "first -> second -> first" in error.message
    assert "'first'" not in error.message


def test_two_disjoint_cycles_are_both_reported() -> None:
    errors = errors_of(
        [task("a", "b"), task("b", "a"), task("ok"), task("c", "d", "ok"), task("d", "c")]
    )
    assert codes(errors) == {"dependency-cycle": 2}
    assert sorted(cycle_in(e) for e in errors) == [["a", "b", "a"], ["c", "d", "c"]]


def test_a_100k_task_chain_closed_into_a_cycle_is_reported_without_recursion_error() -> None:
    n = 100_000
    tasks = [Task(f"t{i}", noop, (f"t{(i + 1) % n}",)) for i in range(n)]
    error = only_error(tasks)
    names = cycle_in(error)
    assert len(names) == n + 1
    assert names[0] == names[-1] == "t0"
    assert names[1:3] == ["t1", "t2"]


def test_a_duplicate_name_is_one_error_per_name() -> None:
    errors = errors_of([task("a"), task("b"), task("a"), task("a"), task("b")])
    assert codes(errors) == {"duplicate-name": 2}
    assert {e.task for e in errors} == {"a", "b"}
    (three,) = [e for e in errors if e.task == "a"]
    assert "3" in three.message


def test_all_missing_dependencies_of_a_task_are_named_in_one_error() -> None:
    error = only_error([task("a", "x", "y", "b"), task("b")])
    assert error.code == "missing-dependencies"
    assert "'x'" in error.message
    assert "'y'" in error.message
    assert "'b'" not in error.message


def test_a_continue_on_failure_task_without_dependents_is_valid() -> None:
    tasks = [task("a"), task("b", "a", continue_on_failure=True)]
    assert validate_tasks(tasks) == tuple(tasks)


@pytest.mark.parametrize("item", [3, "a", None, ("a", noop), [task("a")]], ids=repr)
def test_an_item_that_is_neither_a_task_nor_a_mapping_is_an_invalid_task(item: object) -> None:
    error = only_error([task("b"), item])  # type: ignore[list-item]
    assert error.code == "invalid-task"
    assert error.task is None
    assert "#1" in error.message


@pytest.mark.parametrize("missing", ["name", "fn"])
def test_a_mapping_without_name_or_fn_is_an_invalid_task(missing: str) -> None:
    mapping = {"name": "a", "fn": noop}
    del mapping[missing]
    error = only_error([mapping])
    assert error.code == "invalid-task"
    assert repr(missing) in error.message


def test_a_mapping_without_name_and_fn_reports_both() -> None:
    errors = errors_of([{"dependencies": []}])
    assert codes(errors) == {"invalid-task": 2}
    assert all(e.task is None for e in errors)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("dependecies", "dependencies"),
        ("depends", "dependencies"),
        ("timout", "timeout"),
        ("max_retry", "max_retries"),
        ("continue_on_fail", "continue_on_failure"),
    ],
)
def test_an_unknown_key_is_an_invalid_task_with_a_suggestion(typo: str, meant: str) -> None:
    error = only_error([{"name": "a", "fn": noop, typo: 1}])
    assert error.code == "invalid-task"
    assert error.task == "a"
    assert repr(typo) in error.message
    assert re.search(rf"did you mean '{meant}'", error.message, re.IGNORECASE)


def test_an_unknown_key_far_from_every_field_gets_no_suggestion() -> None:
    error = only_error([{"name": "a", "fn": noop, "zzz": 1}])
    assert error.code == "invalid-task"
    assert "'zzz'" in error.message
    assert "did you mean" not in error.message.lower()


def test_a_mapping_with_field_errors_and_a_typo_key_reports_all_of_them() -> None:
    errors = errors_of(
        [{"name": "a", "fn": noop, "timeout": -1, "max_retries": 1.5, "dependecies": ["b"]}]
    )
    assert codes(errors) == {"invalid-field": 2, "invalid-task": 1}
    assert all(e.task == "a" for e in errors)
    text = "\n".join(e.message for e in errors)
    assert "timeout" in text
    assert "max_retries" in text
    assert "dependencies" in text


def test_a_mapping_field_error_names_the_task_and_the_field() -> None:
    error = only_error([{"name": "a", "fn": noop, "dependencies": "b"}])
    assert error.code == "invalid-field"
    assert error.task == "a"
    assert "dependencies" in error.message


def test_tasks_depending_on_a_rejected_mapping_are_not_also_reported_missing() -> None:
    errors = errors_of(
        [
            {"name": "b", "fn": noop, "timeout": 0},
            {"name": "c", "fn": "not callable"},
            {"name": "d", "fn": noop, "typo": 1},
            task("a", "b", "c", "d"),
        ]
    )
    assert codes(errors) == {"invalid-field": 2, "invalid-task": 1}
    assert "missing-dependencies" not in codes(errors)


def test_a_truly_missing_dependency_is_still_reported_next_to_a_rejected_one() -> None:
    errors = errors_of([{"name": "b", "fn": noop, "timeout": 0}, task("a", "b", "x")])
    assert codes(errors) == {"invalid-field": 1, "missing-dependencies": 1}
    (missing,) = [e for e in errors if e.code == "missing-dependencies"]
    assert "'x'" in missing.message
    assert "'b'" not in missing.message


# -- everything at once ---------------------------------------------------------------


def test_errors_of_every_kind_are_reported_together_in_one_raise() -> None:
    errors = errors_of(
        [
            task("dup"),
            task("dup"),
            task("lonely", "ghost"),
            {"name": "bad", "fn": noop, "timeout": math.nan},
            {"name": "typo", "fn": noop, "dependecies": []},
            42,
            task("soft", continue_on_failure=True),
            task("needs-soft", "soft"),
            task("x", "y"),
            task("y", "x"),
            task("self", "self"),
        ]
    )
    assert codes(errors) == {
        "duplicate-name": 1,
        "missing-dependencies": 1,
        "invalid-field": 1,
        "invalid-task": 2,
        "dependency-cycle": 2,
    }
    by_code = {e.code: e for e in errors}
    assert by_code["duplicate-name"].task == "dup"
    assert by_code["missing-dependencies"].task == "lonely"
    assert by_code["invalid-field"].task == "bad"
    cycles = sorted(cycle_in(e) for e in errors if e.code == "dependency-cycle")
    assert cycles == [["self", "self"], ["x", "y", "x"]]


def test_the_error_can_be_pickled_with_its_errors() -> None:
    with pytest.raises(InvalidTasksError) as caught:
        validate_tasks([task("a", "b"), task("c", "c")])
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.errors == caught.value.errors
    assert str(copy) == str(caught.value)


# -- properties ----------------------------------------------------------------------------


def brute_force_cyclic_components(deps: dict[str, set[str]]) -> set[frozenset[str]]:
    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(deps[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(deps[name])
        return seen

    reaches = {name: reach(name) for name in deps}
    return {
        frozenset(other for other in reaches[name] if name in reaches[other])
        for name in deps
        if name in reaches[name]
    }


@st.composite
def named_graphs(draw: st.DrawFn) -> list[Task]:
    n = draw(st.integers(min_value=1, max_value=7))
    names = draw(st.permutations([f"t{i}" for i in range(n)]))
    return [Task(name, noop, draw(st.sets(st.sampled_from(names), max_size=3))) for name in names]


@given(named_graphs())
def test_validation_reports_a_cycle_exactly_for_each_cyclic_group_of_tasks(
    tasks: list[Task],
) -> None:
    deps = {t.name: set(t.dependencies) for t in tasks}
    position = {t.name: i for i, t in enumerate(tasks)}
    components = brute_force_cyclic_components(deps)
    if not components:
        assert validate_tasks(tasks) == tuple(tasks)
        return
    errors = errors_of(tasks)
    assert codes(errors) == {"dependency-cycle": len(components)}
    found: set[frozenset[str]] = set()
    for error in errors:
        names = cycle_in(error)
        assert names[0] == names[-1]
        for name, dep in itertools.pairwise(names):
            assert dep in deps[name], f"{name} does not depend on {dep}"
        (component,) = [c for c in components if names[0] in c]
        assert names[0] == min(component, key=position.__getitem__)
        found.add(component)
    assert found == components


field_values = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "", 3])},
    optional={
        "fn": st.sampled_from([noop, None]),
        "dependencies": st.sampled_from([(), ["a"], "a", [1], None, frozenset({"a"})]),
        "timeout": st.sampled_from([None, 1, 0.5, 0, -1, math.inf, math.nan, True, "1"]),
        "max_retries": st.sampled_from([None, 0, 2, -1, 1.5, True]),
        "continue_on_failure": st.sampled_from([False, True, 1, None]),
    },
)


@given(field_values)
def test_a_mapping_is_judged_by_exactly_the_rules_of_the_constructor(
    fields: dict[str, Any],
) -> None:
    fields.setdefault("fn", noop)
    try:
        expected: list[TaskError] | Task = Task(**fields)
    except InvalidTasksError as error:
        expected = error.errors
    try:
        got: list[TaskError] | Task = validate_tasks([fields])[0]
    except InvalidTasksError as error:
        # A self-dependency is a cycle: a list-level error the constructor
        # cannot see.
        list_level = {"dependency-cycle"}
        got = [e for e in error.errors if e.code not in list_level] or Task(**fields)
    assert got == expected
