"""Failures a person can read, output that stays small, and a ctx that cannot silently collide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tier_tasks
from helpers import ROOT, WAIT

import daguerreo_actors as d
from daguerreo_actors import JobState, Task, TaskState


def noop(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {}


def writes(key: str, value: Any) -> Callable[..., dict[str, Any]]:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        return {key: value}

    return fn


def unconfigured_output(code: str) -> str:
    """Everything a script prints with structlog left unconfigured."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


# -- bounded failure output ---------------------------------------------------------


def test_one_failed_task_with_three_attempts_prints_at_most_fifteen_lines() -> None:
    output = unconfigured_output(
        """
        import daguerreo_actors as d
        def fetch(ctx, is_active):
            raise ConnectionError("connection refused by api.example.org")
        job = d.run([d.Task("fetch", fetch, max_retries=2)])
        assert job.get(timeout=30).state == "failed"
        job.wait_for_listeners(30)
        """
    )
    lines = output.splitlines()
    assert len(lines) <= 15, output
    assert sum("new_state=exception" in line for line in lines) == 3
    assert "ConnectionError" in output
    assert "connection refused" in output


def test_an_eight_task_pipeline_with_a_retry_and_a_failure_prints_at_most_forty_lines() -> None:
    output = unconfigured_output(
        """
        import daguerreo_actors as d
        calls = []
        def ok(ctx, is_active):
            return {}
        def flaky(ctx, is_active):
            calls.append(1)
            if len(calls) == 1:
                raise TimeoutError("the endpoint is slow")
            return {"page": 1}
        def optional(ctx, is_active):
            raise ValueError("no thumbnails today")
        tasks = [d.Task("fetch", flaky), d.Task("parse", ok, ["fetch"]),
                 d.Task("thumbs", optional, ["fetch"], continue_on_failure=True,
                        max_retries=1)]
        tasks += [d.Task(f"step{i}", ok, ["parse"]) for i in range(5)]
        job = d.run(tasks, timeout=10)
        assert job.get(timeout=30).ok
        job.wait_for_listeners(30)
        """
    )
    assert len(output.splitlines()) <= 40, output
    assert "TimeoutError" in output
    assert "ValueError" in output


def test_failure_entries_carry_text_and_only_the_final_one_a_traceback(
    logs: list[dict[str, Any]],
) -> None:
    def boom(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        raise ConnectionError("x" * 5000)

    job = d.run([Task("boom", boom, max_retries=1)])
    assert job.get(timeout=WAIT).state is JobState.FAILED
    assert job.wait_for_listeners(WAIT)
    entries = [e for e in logs if e.get("task") == "boom" and "error_type" in e]
    retried, final = entries[0], entries[-1]
    assert retried["new_state"] == "exception"
    assert final["new_state"] == "failed"
    assert "traceback" not in retried
    assert len(retried["error"]) <= 500
    assert final["traceback"].splitlines()[0] == "Traceback (most recent call last):"
    assert "in boom" in final["traceback"]
    assert all("exc_info" not in e and "exception" not in e for e in logs)


# -- INVALID_RESULT says what came back ---------------------------------------------


def test_a_task_returning_none_says_it_and_what_to_return(logs: list[dict[str, Any]]) -> None:
    job = d.run([Task("returns-none", lambda _c, _i: None)])  # type: ignore[arg-type, return-value]
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.failure_reason is TaskState.INVALID_RESULT
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert entry["error"] == (
        "task 'returns-none' returned None; a task must return a mapping (return {} for no output)"
    )
    assert entry["result_type"] == "NoneType"


def test_a_task_returning_a_list_names_the_type_and_shows_no_value_unless_asked(
    logs: list[dict[str, Any]],
) -> None:
    job = d.run([Task("lister", lambda _c, _i: ["secret-value"])])  # type: ignore[arg-type, return-value]
    job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert "returned a list, not a mapping" in entry["error"]
    assert "secret-value" not in repr(entry)
    message = d._errors.invalid_result_message("lister", ["secret-value"], with_value=True)
    assert message.endswith(": ['secret-value']")


# -- remote errors that survive the trip --------------------------------------------


def test_an_exception_that_cannot_be_pickled_comes_back_as_a_remote_task_error() -> None:
    with ProcessPoolExecutor(2) as pool:
        result = d.run(
            [Task("fetch", tier_tasks.raises_unpicklable, max_retries=1)], executor=pool
        ).get(timeout=WAIT)
        assert result.state is JobState.FAILED
        error = result.exception
        assert isinstance(error, d.RemoteTaskError)
        assert error.type_name == "tier_tasks.HoldsALock"
        assert "503 Service Unavailable" in error.message
        assert str(error) == f"tier_tasks.HoldsALock: {error.message}"
        assert "raises_unpicklable" in error.remote_traceback
        assert result.attempts["fetch"] == 2  # the original, retried: not a TypeError
        # Nothing broke the pool.
        again = d.run([Task("a", tier_tasks.inc)], ctx={"v": 0}, executor=pool)
        assert again.get(timeout=WAIT).ctx == {"v": 1}


def test_an_exception_that_pickles_but_cannot_be_unpickled_comes_back_as_a_remote_task_error() -> (
    None
):
    # In a fresh interpreter: distributed, once imported (by the Dask tests of
    # this session), installs tblib, which pickles every exception class it
    # knows of by a way that this one does survive.
    code = f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from concurrent.futures import ProcessPoolExecutor
        import daguerreo_actors as d, tier_tasks
        if __name__ == "__main__":
            with ProcessPoolExecutor(1) as pool:
                r = d.run([d.Task("f", tier_tasks.raises_unloadable, max_retries=0)],
                          executor=pool).get(timeout=60)
                e = r.exception
                print("GOT", type(e).__name__, e.type_name, "|", e.message)
                r = d.run([d.Task("a", tier_tasks.inc)], ctx={{"v": 0}},
                          executor=pool).get(timeout=60)
                print("AFTER", r.state)
    """
    done = run_script("unloadable_check.py", code)
    assert "GOT RemoteTaskError tier_tasks.NeedsTwoArguments | 503 warming up" in done.stdout
    assert "AFTER completed" in done.stdout


def run_script(name: str, code: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "build" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_picklable_exception_still_comes_back_as_itself() -> None:
    with ProcessPoolExecutor(1) as pool:
        result = d.run(
            [Task("a", tier_tasks.raises_value_error, max_retries=0)], executor=pool
        ).get(timeout=WAIT)
    assert type(result.exception) is ValueError
    assert str(result.exception) == "plain and picklable"


def test_an_unpicklable_exception_keeps_the_pool_alive_when_distributed_is_imported() -> None:
    pytest.importorskip("distributed", reason="the [dask] extra is not installed")
    code = f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import distributed  # noqa: F401 - the parent has it imported
        from concurrent.futures import ProcessPoolExecutor
        import daguerreo_actors as d, tier_tasks
        if __name__ == "__main__":
            with ProcessPoolExecutor(1) as pool:
                r = d.run([d.Task("f", tier_tasks.raises_unpicklable, max_retries=0)],
                          executor=pool).get(timeout=60)
                print("FIRST", type(r.exception).__name__)
                r = d.run([d.Task("a", tier_tasks.inc)], ctx={{"v": 0}},
                          executor=pool).get(timeout=60)
                print("SECOND", r.state)
    """
    done = run_script("remote_error_check.py", code)
    assert "FIRST RemoteTaskError" in done.stdout
    assert "SECOND completed" in done.stdout


def test_a_remote_task_error_pickles_as_itself() -> None:
    import pickle

    error = d.RemoteTaskError("pkg.Error", "broken", "Traceback ...")
    back = pickle.loads(pickle.dumps(error))
    assert (back.type_name, back.message, back.remote_traceback) == (
        "pkg.Error",
        "broken",
        "Traceback ...",
    )


# -- ctx key conflicts --------------------------------------------------------------


def test_two_independent_tasks_writing_one_key_is_a_conflict_warned_and_recorded(
    logs: list[dict[str, Any]],
) -> None:
    job = d.run([Task("a", writes("out", "a")), Task("b", writes("out", "b"))])
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ok
    [conflict] = result.conflicts
    assert conflict.key == "out"
    assert {conflict.first_task, conflict.second_task} == {"a", "b"}
    assert result.ctx["out"] == conflict.second_task  # the later writer's value is kept
    [warning] = [e for e in logs if e["event"] == "ctx_key_conflict"]
    assert warning["log_level"] == "warning"
    assert warning["key"] == "'out'"
    assert (warning["first_task"], warning["second_task"]) == (
        conflict.first_task,
        conflict.second_task,
    )


def test_overwriting_a_dependency_or_the_initial_ctx_is_no_conflict() -> None:
    tasks = [
        Task("blend", writes("smoothie", "blended")),
        Task("garnish", writes("smoothie", "garnished"), ["blend"]),
        Task("far", writes("smoothie", "far"), ["mid"]),
        Task("mid", noop, ["garnish"]),
        Task("seed", writes("seed", 2)),
    ]
    result = d.run(tasks, ctx={"seed": 1}).get(timeout=WAIT)
    assert result.ok
    assert result.conflicts == ()
    assert result.ctx["smoothie"] == "far"


def test_with_on_conflict_error_the_second_writer_is_an_invalid_result_naming_key_and_task(
    logs: list[dict[str, Any]],
) -> None:
    tasks = [Task("a", writes("out", "a")), Task("b", writes("out", "b"), ["x"]), Task("x", noop)]
    job = d.run(tasks, on_conflict="error", max_concurrency=1)
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.state is JobState.FAILED
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert result.failed_task == "b"
    assert result.ctx["out"] == "a"  # the second value was not merged
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert "'out'" in entry["error"]
    assert "task 'a'" in entry["error"]


def test_with_on_conflict_ignore_nothing_is_recorded() -> None:
    result = d.run(
        [Task("a", writes("out", 1)), Task("b", writes("out", 2))], on_conflict="ignore"
    ).get(timeout=WAIT)
    assert result.ok
    assert result.conflicts == ()


@pytest.mark.parametrize(("value", "error"), [("loud", ValueError), (None, TypeError)])
def test_a_bad_on_conflict_is_an_option_error(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="on_conflict"):
        d.run([Task("a", noop)], on_conflict=value)


# -- types and names that fit --------------------------------------------------------


def test_an_unknown_task_field_says_what_was_meant() -> None:
    with pytest.raises(TypeError, match=r"'dependecies' \(did you mean 'dependencies'\?\)"):
        Task("x", noop, dependecies=["y"])  # type: ignore[call-arg]


def test_task_fn_accepts_sync_and_async_functions_and_rejects_the_wrong_arity(
    tmp_path: Path,
) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from collections.abc import Callable, Mapping
            from typing import Any

            import daguerreo_actors as d


            def sync(ctx: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, int]:
                return {"n": 1}


            async def asynchronous(
                ctx: Mapping[str, Any], is_active: Callable[[], bool]
            ) -> dict[str, int]:
                return {"n": 2}


            def one_argument(ctx: Mapping[str, Any]) -> dict[str, int]:
                return {}


            OK = [d.Task("s", sync), d.Task("a", asynchronous)]
            BAD = d.Task("b", one_argument)
            TYPO = d.Task("t", sync, dependecies=["s"])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sample)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    source = sample.read_text().splitlines()
    bad = next(i for i, line in enumerate(source, 1) if line.startswith("BAD ="))
    typo = next(i for i, line in enumerate(source, 1) if line.startswith("TYPO ="))
    assert len(errors) == 2, done.stdout
    assert f":{bad}:" in errors[0]  # the wrong arity
    assert f":{typo}:" in errors[1]  # no such field
