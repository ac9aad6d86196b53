"""Mapping at run time: Task(map_over=...), children as real tasks of the same job."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from helpers import WAIT

import daguerreo_actors as d
from daguerreo_actors import JobState, RetryPolicy, Task, TaskEvent, TaskState
from daguerreo_actors.testing import VirtualClock

Ctx = Mapping[str, Any]
IsActive = Callable[[], bool]


def give(key: str, value: Any) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        return {key: value}

    return fn


def square(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"sq": ctx["item"] ** 2, "item": ctx["item"]}


def total(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    return {"total": sum(ctx["sq"])}


def mapped_job(items: Any, **options: Any) -> tuple[d.JobResult, list[d.Event]]:
    events: list[d.Event] = []
    job = d.run(
        [
            Task("items", give("xs", items)),
            Task("square", square, ["items"], map_over="xs"),
            Task("total", total, ["square"]),
        ],
        listeners=[events.append],
        **options,
    )
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result, events


def steps(events: list[d.Event], task: str) -> list[tuple[str, str]]:
    return [
        (e.old_state.value, e.new_state.value)
        for e in events
        if isinstance(e, TaskEvent) and e.task == task
    ]


@pytest.mark.parametrize("count", [1, 1000])
def test_a_mapped_task_collects_its_childrens_outputs_in_item_order(count: int) -> None:
    items = list(range(count))
    result, events = mapped_job(items, max_concurrency=4)
    assert result.state is JobState.COMPLETED
    assert result.ctx["sq"] == [i * i for i in items]
    assert result.ctx["item"] == items
    assert result.ctx["total"] == sum(i * i for i in items)
    assert not result.conflicts  # children's outputs are not merged one by one
    for i in (0, count - 1):
        assert result.task_states[f"square[{i}]"] is TaskState.COMPLETED
        assert steps(events, f"square[{i}]") == [
            ("unscheduled", "ready"),
            ("ready", "running"),
            ("running", "completed"),
        ]
    assert steps(events, "square") == [
        ("unscheduled", "ready"),
        ("ready", "running"),
        ("running", "completed"),
    ]
    assert len(result.task_states) == 3 + count


def test_a_mapped_task_holds_no_slot_while_its_children_run() -> None:
    # One slot: were the parent holding it, no child could ever start.
    result, _events = mapped_job([1, 2, 3], max_concurrency=1)
    assert result.state is JobState.COMPLETED
    assert result.ctx["sq"] == [1, 4, 9]


def test_mapping_an_empty_sequence_completes_the_task_at_once_with_no_output() -> None:
    result, events = mapped_job((), max_concurrency=2)
    assert result.state is JobState.FAILED  # total reads ctx["sq"], which nobody wrote
    assert result.task_states["square"] is TaskState.COMPLETED
    assert steps(events, "square")[-1] == ("running", "completed")
    assert not [name for name in result.task_states if name.startswith("square[")]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [("abc", "str"), (b"ab", "bytes"), ({"a": 1}, "dict"), (7, "int"), (None, "NoneType")],
)
def test_a_value_that_cannot_be_mapped_makes_the_task_invalid_result(
    value: Any, type_name: str
) -> None:
    result, events = mapped_job(value)
    assert result.state is JobState.FAILED
    assert result.failed_task == "square"
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert steps(events, "square")[-2:] == [("ready", "running"), ("running", "invalid_result")]
    [failure] = result.failures
    assert failure.invalid_result == value
    assert result.task_states["total"] is TaskState.UPSTREAM_FAILED


def test_the_invalid_result_message_names_the_key_and_the_type(logs: Any) -> None:
    mapped_job({"a": 1})
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert "'xs'" in entry["error"]
    assert "dict" in entry["error"]
    assert "square" in entry["error"]


def test_a_sequence_longer_than_max_map_is_invalid_result_with_the_count(logs: Any) -> None:
    result, _events = mapped_job(list(range(11)), max_map=10)
    assert result.failure_reason is TaskState.INVALID_RESULT
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert "11 items" in entry["error"]
    assert "max_map=10" in entry["error"]
    with pytest.raises(ValueError, match="max_map"):
        d.run([], max_map=-1)


def test_each_child_is_retried_on_its_own() -> None:
    tries: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        with lock:
            tries[ctx["item"]] = tries.get(ctx["item"], 0) + 1
            if ctx["item"] == 2 and tries[2] < 3:
                raise ConnectionError("not yet")
        return {"got": ctx["item"]}

    events: list[d.Event] = []
    job = d.run(
        [Task("m", flaky, map_over="xs", retry=RetryPolicy(max_retries=3))],
        ctx={"xs": [1, 2, 3]},
        listeners=[events.append],
    )
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ctx["got"] == [1, 2, 3]
    assert result.attempts["m[1]"] == 3
    assert result.attempts["m[0]"] == 1
    assert steps(events, "m[1]").count(("running", "exception")) == 2


def test_each_child_has_the_tasks_timeout(clock: VirtualClock) -> None:
    def slow_for_one(ctx: Ctx, is_active: IsActive) -> dict[str, Any]:
        if ctx["item"] == "slow":
            clock.sleep(10)
        return {"done": ctx["item"]}

    events: list[d.Event] = []
    job = d.run(
        [Task("m", slow_for_one, map_over="xs", timeout=5, max_retries=0)],
        ctx={"xs": ["fast", "slow"]},
        clock=clock,
        on_failure="continue",
        listeners=[events.append],
    )
    clock.advance(20)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.task_states["m[0]"] is TaskState.COMPLETED
    assert steps(events, "m[1]")[-2:] == [("running", "timed_out"), ("timed_out", "failed")]
    assert result.state is JobState.FAILED
    assert result.failed_task == "m[1]"
    assert result.failure_reason is TaskState.TIMED_OUT
    assert steps(events, "m")[-1] == ("running", "failed")


def fails_on(bad: int) -> Callable[[Ctx, IsActive], dict[str, Any]]:
    def fn(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        if ctx["item"] == bad:
            raise ValueError(f"bad item {bad}")
        return {"out": ctx["item"] * 10}

    return fn


@pytest.mark.parametrize("on_failure", ["stop", "continue"])
def test_a_failing_child_fails_its_parent_and_the_job_names_the_child(on_failure: str) -> None:
    events: list[d.Event] = []
    job = d.run(
        [
            Task("m", fails_on(3), map_over="xs", max_retries=0),
            Task("after", give("after", 1), ["m"]),
            Task("other", give("other", 1)),
        ],
        ctx={"xs": [1, 2, 3, 4]},
        on_failure=on_failure,
        max_concurrency=1,
        listeners=[events.append],
    )
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.FAILED
    assert result.failed_task == "m[2]"
    assert isinstance(result.exception, ValueError)
    assert str(result.exception) == "bad item 3"
    assert steps(events, "m")[-1] == ("running", "failed")
    assert result.task_states["m"] is TaskState.FAILED
    assert result.task_states["after"] is TaskState.UPSTREAM_FAILED
    assert "out" not in result.ctx  # no output of a failed map is merged
    assert result.task_states["m[3]"] in (TaskState.SKIPPED, TaskState.COMPLETED)
    if on_failure == "continue":
        assert result.task_states["other"] is TaskState.COMPLETED


def test_with_continue_on_failure_a_failed_child_leaves_none_and_the_parent_completes() -> None:
    job = d.run(
        [Task("m", fails_on(2), map_over="xs", max_retries=0, continue_on_failure=True)],
        ctx={"xs": [1, 2, 3]},
    )
    result = job.get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.task_states["m"] is TaskState.COMPLETED
    assert result.task_states["m[1]"] is TaskState.FAILED
    assert result.ctx["out"] == [10, None, 30]
    assert [f.task for f in result.failures] == ["m[1]"]


def test_a_child_returning_a_key_that_is_not_a_str_is_invalid_result() -> None:
    def odd(ctx: Ctx, _is_active: IsActive) -> dict[Any, Any]:
        return {1: ctx["item"]}

    result = d.run([Task("m", odd, map_over="xs")], ctx={"xs": [1]}).get(timeout=WAIT)
    assert result.failed_task == "m[0]"
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert result.task_states["m"] is TaskState.FAILED


def test_the_item_goes_under_map_as() -> None:
    def fn(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        return {"seen": ctx["station"] + ctx["suffix"]}

    result = d.run(
        [Task("m", fn, map_over="xs", map_as="station")], ctx={"xs": ["a", "b"], "suffix": "!"}
    ).get(timeout=WAIT)
    assert result.ctx["seen"] == ["a!", "b!"]
    assert "station" not in result.ctx


def test_cancel_and_the_job_timeout_cancel_a_mapped_task_and_its_children(
    clock: VirtualClock,
) -> None:
    def sleepy(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        clock.sleep(100)
        return {}

    events: list[d.Event] = []
    job = d.run(
        [Task("m", sleepy, map_over="xs")],
        ctx={"xs": [1, 2, 3]},
        clock=clock,
        timeout=10,
        max_concurrency=2,
        listeners=[events.append],
    )
    clock.advance(11)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.TIMED_OUT
    assert result.task_states["m"] is TaskState.CANCELLED
    assert [result.task_states[f"m[{i}]"] for i in range(3)] == [
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.SKIPPED,
    ]


def test_bad_map_fields_are_reported_with_the_other_errors() -> None:
    with pytest.raises(d.InvalidTasksError) as caught:
        d.run(
            [
                {"name": "a", "fn": square, "map_over": ""},
                {"name": "b", "fn": square, "map_over": "xs", "map_as": 3},
                {"name": "c", "fn": square, "map_over": "xs", "cache": True},
            ]
        )
    text = str(caught.value)
    assert "task 'a'" in text
    assert "'map_over'" in text
    assert "task 'b'" in text
    assert "'map_as'" in text
    assert "task 'c'" in text
    assert "'cache'" in text
    assert len(caught.value.errors) == 3


# -- resume -----------------------------------------------------------------------

#: Items whose child fails (read by the task through a global: the task's
#: definition, hence its fingerprint, is the same in both runs).
BROKEN: set[int] = set()
CALLS: list[int] = []


def fetch_item(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    CALLS.append(ctx["item"])
    if ctx["item"] in BROKEN:
        raise ConnectionError(f"item {ctx['item']} is down")
    return {"got": ctx["item"] * 10}


def summed(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
    CALLS.append(-1)
    if -1 in BROKEN:
        raise ConnectionError("the sum is down")
    return {"sum": sum(ctx["got"])}


def resumable() -> list[Task]:
    return [
        Task("fetch", fetch_item, map_over="xs", max_retries=0),
        Task("sum", summed, ["fetch"], max_retries=0),
    ]


def test_a_resumed_job_reruns_only_the_children_that_did_not_complete(tmp_path: Any) -> None:
    path = tmp_path / "maps.db"
    BROKEN.clear()
    CALLS.clear()
    BROKEN.add(3)
    first = d.run(resumable(), ctx={"xs": [0, 1, 2, 3, 4]}, journal=path, max_concurrency=1).get(
        timeout=WAIT
    )
    assert first.state is JobState.FAILED
    assert first.failed_task == "fetch[3]"
    assert first.task_states["fetch[4]"] is TaskState.SKIPPED
    BROKEN.clear()
    CALLS.clear()
    events: list[d.Event] = []
    job = d.resume(
        resumable(), journal=path, ctx={"xs": [0, 1, 2, 3, 4]}, listeners=[events.append]
    )
    again = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert again.state is JobState.COMPLETED
    assert sorted(CALLS) == [-1, 3, 4]  # children 0-2 were not run again
    assert again.ctx["got"] == [0, 10, 20, 30, 40]
    assert again.ctx["sum"] == 100
    restored = [e.task for e in events if isinstance(e, TaskEvent) and e.restored]
    assert restored == ["fetch[0]", "fetch[1]", "fetch[2]"]


def test_a_completed_map_is_restored_whole_and_only_its_failed_dependent_runs(
    tmp_path: Any,
) -> None:
    path = tmp_path / "maps.db"
    BROKEN.clear()
    CALLS.clear()
    BROKEN.add(-1)
    first = d.run(resumable(), ctx={"xs": [1, 2]}, journal=path).get(timeout=WAIT)
    assert first.failed_task == "sum"
    BROKEN.clear()
    CALLS.clear()
    again = d.resume(resumable(), journal=path, ctx={"xs": [1, 2]}).get(timeout=WAIT)
    assert again.state is JobState.COMPLETED
    assert CALLS == [-1]  # no child ran again
    assert again.ctx["got"] == [10, 20]
    assert again.ctx["sum"] == 30


def test_a_resumed_map_can_be_resumed_in_turn(tmp_path: Any) -> None:
    path = tmp_path / "maps.db"
    xs = {"xs": [0, 1, 2]}
    BROKEN.clear()
    BROKEN.update({1, 2})
    options: dict[str, Any] = {"journal": path, "ctx": xs, "on_failure": "continue"}
    first = d.run(resumable(), max_concurrency=1, **options).get(timeout=WAIT)
    assert first.failed_task == "fetch[1]"
    BROKEN.discard(1)
    CALLS.clear()
    second = d.resume(resumable(), **options).get(timeout=WAIT)
    assert second.failed_task == "fetch[2]"
    assert sorted(CALLS) == [1, 2]
    BROKEN.clear()
    CALLS.clear()
    third = d.resume(resumable(), **options).get(timeout=WAIT)
    assert third.state is JobState.COMPLETED
    assert sorted(CALLS) == [-1, 2]  # fetch[1] was restored from the second job's copy
    assert third.ctx["got"] == [0, 10, 20]


def test_children_run_on_a_process_pool_each_in_its_own_slot() -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        result = d.run(
            [Task("square", square, map_over="xs")], ctx={"xs": list(range(6))}, executor=pool
        ).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED, result.exception
    assert result.ctx["sq"] == [0, 1, 4, 9, 16, 25]


def test_an_async_mapped_task_runs_its_children_on_the_event_loop() -> None:
    import asyncio

    async def later(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"y": ctx["item"] + 1}

    result = d.run([Task("m", later, map_over="xs")], ctx={"xs": [1, 2, 3]}).get(timeout=WAIT)
    assert result.ctx["y"] == [2, 3, 4]


def test_a_resumed_map_restored_whole_can_be_restored_whole_again(tmp_path: Any) -> None:
    path = tmp_path / "maps.db"
    BROKEN.clear()
    BROKEN.add(-1)
    options: dict[str, Any] = {"journal": path, "ctx": {"xs": [1, 2, 3]}}
    assert d.run(resumable(), **options).get(timeout=WAIT).failed_task == "sum"
    # The second job restores the map whole (its children never become nodes)...
    assert d.resume(resumable(), **options).get(timeout=WAIT).failed_task == "sum"
    BROKEN.clear()
    CALLS.clear()
    # ... and records their fates, so a third job restores it whole too.
    third = d.resume(resumable(), **options).get(timeout=WAIT)
    assert third.state is JobState.COMPLETED
    assert CALLS == [-1]
    assert third.ctx["got"] == [10, 20, 30]
    assert third.ctx["sum"] == 60


def test_mapping_an_empty_sequence_with_a_journal_completes(tmp_path: Any) -> None:
    path = tmp_path / "maps.db"
    BROKEN.clear()
    tasks = [
        Task("fetch", fetch_item, map_over="xs"),
        Task("count", lambda ctx, _a: {"n": len(ctx.get("got", []))}, ["fetch"]),
    ]
    result = d.run(tasks, ctx={"xs": []}, journal=path).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED, result.exception
    assert result.ctx["n"] == 0
    with pytest.raises(d.JournalError, match="no job to resume"):  # it completed
        d.resume(tasks, ctx={"xs": []}, journal=path)


def test_a_mapped_output_merged_while_another_task_commits_keeps_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mapped task's output is merged on the JobActor's drain while a pool
    # thread commits another result: the book swapped must be the one merged.
    from daguerreo_actors import _ctx

    in_merge, other_merged = threading.Event(), threading.Event()
    merged = _ctx.CtxBook.merged

    def merged_slowly(self: Any, output: Any, node: int, graph: Any) -> Any:
        book = merged(self, output, node, graph)
        if "y" in output:  # the mapped task's collected output
            in_merge.set()
            assert other_merged.wait(WAIT)
            # Let the other thread swap its book (a few µs) before this one does.
            threading.Event().wait(0.05)
        elif "z" in output:
            other_merged.set()
        return book

    monkeypatch.setattr(_ctx.CtxBook, "merged", merged_slowly)

    def other(_ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        assert in_merge.wait(WAIT)
        return {"z": 1}

    result = d.run(
        [
            Task("m", give("y", 1), map_over="xs"),
            Task("t", other),
            Task("u", lambda ctx, _a: {"w": ctx["z"] + 1}, ["t"], max_retries=0),
        ],
        ctx={"xs": [1]},
        max_concurrency=2,
    ).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED, result.exception
    assert result.ctx["w"] == 2


def test_a_failed_map_takes_back_its_offered_children_under_continue() -> None:
    failed = threading.Event()
    began: list[int] = []

    def child(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        began.append(ctx["item"])
        if ctx["item"] == 0:
            raise ValueError("boom")
        assert failed.wait(WAIT)  # until the parent has failed
        return {"y": ctx["item"]}

    def on_event(event: d.Event) -> None:
        if isinstance(event, TaskEvent) and event.task == "m" and event.new_state is FAILED:
            failed.set()

    result = d.run(
        [Task("m", child, map_over="xs", max_retries=0), Task("other", give("o", 1))],
        ctx={"xs": list(range(40))},
        max_concurrency=2,
        on_failure="continue",
        listeners=[on_event],
    ).get(timeout=WAIT)
    assert result.task_states["m"] is FAILED
    assert result.ctx["o"] == 1
    # Only the two children running when child 0 failed ever began.
    assert sorted(began) == [0, 1]
    skipped = [n for n, s in result.task_states.items() if s is TaskState.SKIPPED]
    assert len(skipped) == 38


FAILED = TaskState.FAILED


@pytest.mark.timeout(10)  # about 0.3 s; the quadratic removal took about 27 s
@pytest.mark.parametrize("on_failure", ["stop", "continue"])
def test_a_failing_map_of_50k_children_with_priorities_ends_without_quadratic_removal(
    on_failure: str,
) -> None:
    # Removing each queued child scanned every heap: 50k children took minutes.
    def child(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        if ctx["item"] == 0:
            raise ValueError("boom")
        return {}

    result = d.run(
        [Task("m", child, map_over="xs", max_retries=0, priority=1), Task("o", give("o", 1))],
        ctx={"xs": list(range(50_000))},
        max_concurrency=1,
        on_failure=on_failure,
    ).get(timeout=WAIT * 4)
    assert result.failed_task == "m[0]"
    assert result.task_states["m[49999]"] is TaskState.SKIPPED


def test_a_task_named_like_a_mapped_tasks_child_is_rejected() -> None:
    with pytest.raises(d.InvalidTasksError, match=r"\[duplicate-name\] task 'm\[0\]'"):
        d.run([Task("m", give("y", 1), map_over="xs"), Task("m[0]", give("z", 1))])


def test_the_progress_display_counts_the_children(tmp_path: Any) -> None:
    from rich.console import Console

    out = tmp_path / "progress.txt"
    with out.open("w") as file:
        progress = d.ProgressListener(1, console=Console(file=file, width=120))
        job = d.run(
            [Task("m", give("y", 1), map_over="xs")],
            ctx={"xs": list(range(50))},
            listeners=[progress],
        )
        assert job.get(timeout=WAIT).ok
        assert job.wait_for_listeners(WAIT)
    assert "51/51" in out.read_text()


def test_an_unmappable_value_logs_the_duration_of_its_check(logs: Any) -> None:
    result = d.run([Task("m", give("y", 1), map_over="xs")], ctx={"xs": 3}).get(timeout=WAIT)
    assert result.task_states["m"] is TaskState.INVALID_RESULT
    entry = next(e for e in logs if e.get("new_state") == "invalid_result")
    assert 0 <= entry["duration"] < 5
