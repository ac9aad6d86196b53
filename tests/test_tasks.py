"""The Task record: a frozen dataclass that checks its own fields."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from helpers import noop
from hypothesis import given
from hypothesis import strategies as st

from daguerreo_actors import InvalidTasksError, Task, TaskError


def field_errors_of(**fields: Any) -> list[TaskError]:
    """The errors ``Task(name="t", fn=noop, **fields)`` raises (it must raise)."""
    fields.setdefault("name", "t")
    fields.setdefault("fn", noop)
    with pytest.raises(InvalidTasksError) as caught:
        Task(**fields)
    return caught.value.errors


def assert_one_field_error(field: str, **fields: Any) -> TaskError:
    errors = field_errors_of(**fields)
    assert len(errors) == 1, errors
    (error,) = errors
    assert error.code == "invalid-field"
    assert field in error.message
    return error


# -- the record ---------------------------------------------------------------


def test_a_task_has_the_documented_defaults() -> None:
    task = Task("a", noop)
    assert task.name == "a"
    assert task.fn is noop
    assert task.dependencies == frozenset()
    assert task.timeout is None
    assert task.max_retries is None
    assert task.continue_on_failure is False


def test_fields_can_be_given_positionally_in_the_documented_order() -> None:
    task = Task("a", noop, ["b"], 2.5, 3, True)
    assert task == Task(
        name="a",
        fn=noop,
        dependencies=frozenset({"b"}),
        timeout=2.5,
        max_retries=3,
        continue_on_failure=True,
    )


def test_a_task_is_frozen() -> None:
    task = Task("a", noop)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.dependencies = frozenset({"x"})  # type: ignore[misc]
    assert task.name == "a"
    assert task.dependencies == frozenset()


def test_any_callable_is_a_task_function() -> None:
    class CallableObject:
        def __call__(self, ctx: object, is_active: object) -> dict[str, int]:
            return {}

    fn = CallableObject()
    assert Task("a", fn).fn is fn
    assert Task("b", print).fn is print


def test_the_task_function_is_called_with_ctx_and_is_active() -> None:
    seen: list[tuple[object, object]] = []

    def fn(ctx: Mapping[Any, Any], is_active: Callable[[], bool]) -> Mapping[Any, Any]:
        seen.append((ctx, is_active()))
        return {"out": 1}

    task = Task("a", fn)
    assert task.fn({"in": 0}, lambda: True) == {"out": 1}
    assert seen == [({"in": 0}, True)]


# -- name and fn --------------------------------------------------------------


@pytest.mark.parametrize("name", ["", 3, None, b"a", ["a"]])
def test_a_name_must_be_a_non_empty_str(name: object) -> None:
    error = assert_one_field_error("name", name=name)
    assert error.task is None
    assert "non-empty str" in error.message


@pytest.mark.parametrize("fn", [None, 3, "noop", {"a": 1}])
def test_fn_must_be_callable(fn: object) -> None:
    error = assert_one_field_error("fn", name="a", fn=fn)
    assert error.task == "a"


# -- dependencies ---------------------------------------------------------------


def deps_iterables() -> list[Iterable[str]]:
    return [
        ["b", "c", "b"],
        ("c", "b"),
        {"b", "c"},
        frozenset({"b", "c"}),
        (name for name in ["b", "c"]),
        iter(["c", "b"]),
        {"b": 1, "c": 2}.keys(),
    ]


@pytest.mark.parametrize("deps", deps_iterables(), ids=lambda d: type(d).__name__)
def test_dependencies_from_any_iterable_become_the_same_frozenset(deps: Iterable[str]) -> None:
    task = Task("a", noop, deps)
    assert type(task.dependencies) is frozenset
    assert task.dependencies == frozenset({"b", "c"})


def test_a_one_shot_iterable_of_dependencies_is_not_lost() -> None:
    task = Task("a", noop, dependencies=(name for name in ["b"]))
    assert task.dependencies == frozenset({"b"})
    assert task.dependencies == frozenset({"b"})  # read again: stored, not re-iterated


def test_a_bare_string_dependency_is_an_error_not_a_set_of_letters() -> None:
    error = assert_one_field_error("dependencies", name="a", dependencies="bc")
    assert error.task == "a"
    assert "'bc'" in error.message
    # The fix is spelled out for the user.
    assert "['bc']" in error.message


def test_a_bare_bytes_dependency_is_an_error_too() -> None:
    assert_one_field_error("dependencies", name="a", dependencies=b"bc")


@pytest.mark.parametrize("deps", [None, 3, noop])
def test_dependencies_must_be_iterable(deps: object) -> None:
    assert_one_field_error("dependencies", name="a", dependencies=deps)


@pytest.mark.parametrize(
    "deps",
    [["b", 3], ["b", None], ["b", ""], frozenset({"b", 3}), [("b",)], [["b"]]],
    ids=repr,
)
def test_every_dependency_must_be_a_task_name(deps: object) -> None:
    assert_one_field_error("dependencies", name="a", dependencies=deps)


@given(st.lists(st.text(min_size=1, max_size=5), max_size=8), st.sampled_from([list, tuple, set]))
def test_dependencies_are_stored_as_the_frozenset_of_the_names_given(
    names: list[str], container: Callable[[list[str]], Iterable[str]]
) -> None:
    assert Task("a", noop, container(names)).dependencies == frozenset(names)


# -- timeout --------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [5, 1, 10**6])
def test_an_int_timeout_is_converted_to_float(timeout: int) -> None:
    task = Task("a", noop, timeout=timeout)
    assert type(task.timeout) is float
    assert task.timeout == float(timeout)


def test_a_float_timeout_is_kept() -> None:
    assert Task("a", noop, timeout=0.25).timeout == 0.25


def test_an_infinite_timeout_means_no_timeout_and_is_accepted() -> None:
    task = Task("a", noop, timeout=math.inf)
    assert task.timeout == math.inf


@pytest.mark.parametrize(
    "timeout",
    [0, 0.0, -0.0, -1, -0.5, -math.inf, math.nan, True, False, "5", [5], complex(1, 0)],
    ids=repr,
)
def test_a_timeout_must_be_a_number_of_seconds_above_zero(timeout: object) -> None:
    error = assert_one_field_error("timeout", name="a", timeout=timeout)
    assert error.task == "a"


@given(st.floats(min_value=0, max_value=1e9, exclude_min=True) | st.integers(1, 10**9))
def test_every_positive_timeout_is_accepted_as_a_float(timeout: float) -> None:
    task = Task("a", noop, timeout=timeout)
    assert type(task.timeout) is float
    assert task.timeout == float(timeout)


@given(st.floats(min_value=1e9, exclude_min=True) | st.integers(min_value=10**9 + 1))
def test_a_timeout_beyond_31_years_means_no_timeout(timeout: float) -> None:
    assert Task("a", noop, timeout=timeout).timeout == math.inf


@given(st.floats(max_value=0) | st.just(math.nan) | st.integers(max_value=0))
def test_every_non_positive_timeout_is_rejected(timeout: float) -> None:
    assert_one_field_error("timeout", name="a", timeout=timeout)


# -- max_retries ----------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [None, 0, 1, 100])
def test_max_retries_is_none_or_an_int_from_zero(max_retries: int | None) -> None:
    assert Task("a", noop, max_retries=max_retries).max_retries == max_retries


@pytest.mark.parametrize("max_retries", [True, False, -1, 1.5, 2.0, "1", math.inf], ids=repr)
def test_max_retries_rejects_bools_negatives_and_non_ints(max_retries: object) -> None:
    error = assert_one_field_error("max_retries", name="a", max_retries=max_retries)
    assert error.task == "a"


# -- continue_on_failure --------------------------------------------------------


@pytest.mark.parametrize("flag", [True, False])
def test_continue_on_failure_accepts_a_bool(flag: bool) -> None:
    assert Task("a", noop, continue_on_failure=flag).continue_on_failure is flag


@pytest.mark.parametrize("flag", [1, 0, "yes", None, 1.0], ids=repr)
def test_continue_on_failure_must_be_a_real_bool(flag: object) -> None:
    error = assert_one_field_error("continue_on_failure", name="a", continue_on_failure=flag)
    assert error.task == "a"


# -- all errors at once -----------------------------------------------------------


def test_all_of_a_tasks_field_errors_are_reported_at_once() -> None:
    errors = field_errors_of(name="a", timeout=-1, max_retries=-1, continue_on_failure=1)
    assert len(errors) == 3
    assert {e.code for e in errors} == {"invalid-field"}
    assert {e.task for e in errors} == {"a"}
    for field, error in zip(["timeout", "max_retries", "continue_on_failure"], errors, strict=True):
        assert field in error.message


def test_every_field_can_be_wrong_at_once() -> None:
    errors = field_errors_of(
        name=3,
        fn=3,
        dependencies="b",
        timeout=math.nan,
        max_retries=True,
        continue_on_failure=1,
    )
    assert len(errors) == 6
    messages = "\n".join(e.message for e in errors)
    for field in ("name", "fn", "dependencies", "timeout", "max_retries", "continue_on_failure"):
        assert repr(field) in messages


def test_the_constructor_error_names_the_task_and_the_field_for_a_person() -> None:
    with pytest.raises(InvalidTasksError, match=r"^1 error in tasks:") as caught:
        Task("fetch", noop, timeout=-2)
    text = str(caught.value)
    assert "'fetch'" in text
    assert "timeout" in text
    assert "-2" in text
    assert "invalid-field" in text


def test_the_constructor_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        Task("a", noop, max_retries=-1)
