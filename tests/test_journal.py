"""The journal: records, resume after a crash with exactly-once merge, leases, definitions."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import journal_tasks
import pytest
from helpers import WAIT, Ctx, IsActive

import daguerreo_actors as d
from daguerreo_actors import Journal, JournalError, SerializationError, Task, TaskState
from daguerreo_actors._journal_read import journal_lines

HERE = Path(__file__).resolve().parent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "pipeline.db"


def counting(
    calls: list[str], name: str, fail: threading.Event | None = None
) -> Callable[..., Any]:
    def fn(ctx: Ctx, _is_active: IsActive) -> dict[str, Any]:
        calls.append(name)
        if fail is not None and fail.is_set():
            raise RuntimeError("down")
        return {name: 1 + sum(v for v in ctx.values() if isinstance(v, int))}

    return fn


def diamond(calls: list[str], fail: threading.Event | None = None) -> list[Task]:
    return [
        Task("a", counting(calls, "a")),
        Task("b", counting(calls, "b"), ["a"]),
        Task("c", counting(calls, "c", fail), ["b"], max_retries=0),
        Task("d", counting(calls, "d"), ["b", "c"]),
    ]


def finished(job: d.Job) -> d.JobResult:
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    return result


# -- recording ---------------------------------------------------------------------------


def test_a_journaled_job_records_itself_its_transitions_and_every_output(path: Path) -> None:
    result = finished(d.run(diamond([]), journal=path))
    assert result.ok
    with Journal(path) as journal:
        [job] = journal.jobs()
        assert (job.state, job.tasks, job.completed) == ("completed", 4, 4)
        assert job.wall_time is not None
        assert [row[0] for row in journal.recorded(job.job_id)] == list(result.ctx)
        rows = journal.transitions(job.job_id)
    completed = [r for r in rows if r[2] == "completed" and r[0] is not None]
    assert sorted(r[0] for r in completed) == ["a", "b", "c", "d"]
    assert rows[0][:3] == (None, "idle", "running")
    assert rows[-1][:3] == (None, "running", "completed")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)


def test_an_output_that_cannot_be_serialized_fails_that_attempt_naming_the_key(
    path: Path,
) -> None:
    tasks = [Task("bad", lambda _c, _a: {"fine": 1, "lock": threading.Lock()})]
    result = finished(d.run(tasks, journal=path))
    assert result.failed_task == "bad"
    assert isinstance(result.exception, SerializationError)
    assert "'bad'" in str(result.exception)
    assert "'lock'" in str(result.exception)


def test_a_json_serializer_makes_a_readable_journal(path: Path) -> None:
    assert finished(
        d.run([Task("a", lambda _c, _a: {"x": [1, 2]})], journal=path, serializer=json)
    ).ok
    with sqlite3.connect(path) as db:
        [(blob,)] = db.execute("SELECT output FROM outputs").fetchall()
    assert json.loads(blob) == {"x": [1, 2]}


def test_bad_journal_and_serializer_arguments_are_refused(path: Path) -> None:
    with pytest.raises(TypeError, match="journal must be"):
        d.run([Task("a", lambda _c, _a: {})], journal=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="serializer must be"):
        d.run([Task("a", lambda _c, _a: {})], journal=path, serializer=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="journal"):
        d.run([Task("a", lambda _c, _a: {})], serializer=json)  # type: ignore[arg-type]


# -- resume ------------------------------------------------------------------------------


def test_resume_runs_only_what_did_not_complete_and_restores_the_rest_in_order(
    path: Path,
) -> None:
    calls: list[str] = []
    fail = threading.Event()
    fail.set()
    first = finished(d.run(diamond(calls, fail), journal=path))
    assert first.failed_task == "c"
    calls.clear()
    fail.clear()
    events: list[Any] = []
    job = d.resume(diamond(calls, fail), journal=path, listeners=[events.append])
    result = finished(job)
    assert result.ok
    assert calls == ["c", "d"]
    assert result.resumed_from is not None
    assert first.ctx.items() <= result.ctx.items()
    assert result.attempts == {"a": 0, "b": 0, "c": 1, "d": 1}
    restored = [(e.task, e.old_state, e.new_state) for e in events if getattr(e, "restored", False)]
    assert restored == [
        ("a", TaskState.UNSCHEDULED, TaskState.COMPLETED),
        ("b", TaskState.UNSCHEDULED, TaskState.COMPLETED),
    ]
    # Same ctx as an uninterrupted run.
    assert result.ctx == finished(d.run(diamond([]))).ctx
    with pytest.raises(JournalError, match="no job to resume"):
        d.resume(diamond([]), journal=path)


def test_a_changed_definition_runs_again_with_everything_downstream(
    path: Path, logs: list[dict[str, Any]]
) -> None:
    calls: list[str] = []
    assert finished(d.run(diamond(calls), journal=path)).ok
    with Journal(path) as journal:
        job_id = journal.jobs()[0].job_id
    calls.clear()
    changed = diamond(calls)
    changed[1] = Task("b", counting(calls, "b"), ["a"], version=2)
    result = finished(d.resume(changed, journal=path, job_id=job_id[:8]))
    assert result.ok
    assert sorted(calls) == ["b", "c", "d"]
    reruns = {e["task"]: e["reason"] for e in logs if e["event"] == "task_rerun"}
    assert set(reruns) == {"b", "c", "d"}
    assert "changed" in reruns["b"]
    assert "runs again" in reruns["d"]


def test_a_changed_function_body_is_a_changed_definition(path: Path) -> None:
    def v1(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"x": 1}

    def v2(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"x": 2}

    v2.__qualname__ = v1.__qualname__
    first = finished(d.run([Task("a", v1)], journal=path))
    with Journal(path) as journal:
        job_id = journal.jobs()[0].job_id
    assert first.ctx["x"] == 1
    # Resuming the completed job with the same code restores; with new code, reruns.
    assert finished(d.resume([Task("a", v1)], journal=path, job_id=job_id)).attempts["a"] == 0
    again = finished(d.resume([Task("a", v2)], journal=path, job_id=job_id))
    assert (again.ctx["x"], again.attempts["a"]) == (2, 1)


def test_a_job_driven_by_another_live_process_cannot_be_resumed(path: Path) -> None:
    release = threading.Event()

    def hold(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        assert release.wait(WAIT)
        return {}

    job = d.run([Task("a", hold)], journal=path)
    try:
        with pytest.raises(JournalError, match=rf"pid {os.getpid()}"):
            d.resume([Task("a", hold)], journal=path)
    finally:
        release.set()
    assert finished(job).ok


def test_a_lease_whose_holder_is_gone_is_taken_over(path: Path) -> None:
    script = (
        "import sys, time, daguerreo_actors as d\n"
        "job = d.run([d.Task('a', lambda c, a: time.sleep(60) or {})], journal=sys.argv[1])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        with pytest.raises(JournalError, match=rf"pid {child.pid}"):
            d.resume([Task("a", lambda _c, _a: {"ok": True})], journal=path)
    finally:
        child.kill()
        child.wait(WAIT)
    result = finished(d.resume([Task("a", lambda _c, _a: {"ok": True})], journal=path))
    assert result.ctx["ok"] is True


def test_journal_forget_makes_a_task_run_again_on_resume(path: Path) -> None:
    calls: list[str] = []
    fail = threading.Event()
    fail.set()
    finished(d.run(diamond(calls, fail), journal=path))
    with Journal(path) as journal:
        assert journal.forget(task="b") == 1
    calls.clear()
    fail.clear()
    assert finished(d.resume(diamond(calls, fail), journal=path)).ok
    assert sorted(calls) == ["b", "c", "d"]


def test_an_open_journal_object_serves_several_jobs(path: Path) -> None:
    with Journal(path) as journal:
        for _ in range(3):
            assert finished(d.run(diamond([]), journal=journal)).ok
        assert [j.state for j in journal.jobs()] == ["completed"] * 3


# -- the crash test ------------------------------------------------------------------------


def _spawn(journal: Path, side: Path, result: Path, run: int, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "journal_tasks.py"),
            str(journal),
            str(side),
            str(result),
            str(run),
            mode,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _has_job(journal: Path) -> bool:
    if not journal.exists():
        return False
    with sqlite3.connect(journal) as db:
        try:
            return bool(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        except sqlite3.OperationalError:  # killed before the schema was written
            return False


def _originals(journal: Path) -> dict[str, tuple[int, str]]:
    """Each task's committed (not restored) output: (pid of its job, job id)."""
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "outputs" not in tables:  # killed before the schema was written
            assert "jobs" not in tables, "the schema was written in part"
            return {}
        rows = db.execute(
            "SELECT o.task, j.pid, j.job_id FROM outputs o JOIN jobs j ON j.job_id = o.job_id"
            " WHERE o.restored_from IS NULL"
        ).fetchall()
    tasks = [task for task, _pid, _job in rows]
    assert len(tasks) == len(set(tasks)), "a task was committed twice"
    return {task: (pid, job) for task, pid, job in rows}


def _check_side_effects(
    side: Path, originals: Mapping[str, tuple[int, str]], runs: Mapping[int, int]
) -> None:
    """No task ran again after its output was committed; each committed run ran once."""
    lines = [line.split() for line in side.read_text().splitlines()] if side.exists() else []
    for task, (pid, _job) in originals.items():
        committed_run = runs[pid]
        seen = Counter(int(run) for name, run in lines if name == task)
        assert seen[committed_run] == 1, (task, seen)
        assert all(run <= committed_run for run in seen), (task, seen)


@pytest.mark.timeout(240)
def test_thirty_kill_nines_at_random_moments_and_every_output_is_merged_exactly_once(
    tmp_path: Path,
) -> None:
    expected = journal_tasks.values(
        finished(d.run(journal_tasks.dag(), ctx={"side": str(tmp_path / "x"), "run": 0})).ctx
    )
    rng = random.Random(20261202)
    kills = campaigns = 0
    while kills < 30:
        campaigns += 1
        base = tmp_path / f"c{campaigns}"
        base.mkdir()
        journal, side, result = base / "j.db", base / "side.txt", base / "result.json"
        runs: dict[int, int] = {}  # pid -> run number
        run = 0
        while True:
            child = _spawn(journal, side, result, run, "resume" if _has_job(journal) else "run")
            runs[child.pid] = run
            try:
                child.wait(timeout=rng.uniform(0.05, 0.9))
            except subprocess.TimeoutExpired:
                child.kill()  # SIGKILL
                child.wait(WAIT)
                kills += 1
            else:
                assert child.stderr is not None
                assert child.returncode == 0, child.stderr.read().decode()[-2000:]
            if child.stderr is not None:
                child.stderr.close()
            if journal.exists():
                _check_side_effects(side, _originals(journal), runs)
            if result.exists():
                break
            run += 1
            assert run < 200, "the job never completed"
        outcome = json.loads(result.read_text())
        assert outcome["state"] == "completed"
        assert outcome["ctx"] == expected
    assert kills >= 30


def test_a_report_from_the_journal_has_every_attempt_and_the_critical_path(path: Path) -> None:
    calls: list[str] = []
    fail = threading.Event()
    fail.set()
    finished(d.run(diamond(calls, fail), journal=path))
    fail.clear()
    finished(d.resume(diamond(calls, fail), journal=path))
    report = d.JobReport.from_journal(path)
    assert report.state.value == "completed"
    assert {name: len(t.attempts) for name, t in report.tasks.items()} == {
        "a": 0,
        "b": 0,
        "c": 1,
        "d": 1,
    }
    assert report.critical_path == ["a", "b", "c", "d"]
    first = d.JobReport.all_from_log(journal_lines(path))[0]
    assert first.state.value == "failed"
    assert first.tasks["c"].attempts[0].error == "RuntimeError: "


# -- the cache -------------------------------------------------------------------------------


def caching(calls: list[str]) -> list[Task]:
    def load(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        calls.append("load")
        return {"rows": ctx["n"] * 2}

    def report(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        calls.append("report")
        return {"report": ctx["rows"] + 1}

    return [Task("load", load, cache=True), Task("report", report, ["load"], cache=True)]


def test_a_cached_task_is_reused_when_what_it_read_is_unchanged_and_run_when_it_changed(
    path: Path, logs: list[dict[str, Any]]
) -> None:
    calls: list[str] = []
    first = finished(d.run(caching(calls), ctx={"n": 1, "other": 1}, journal=path))
    assert calls == ["load", "report"]
    calls.clear()
    events: list[Any] = []
    # "other" is not read by either task: both are hits.
    job = d.run(caching(calls), ctx={"n": 1, "other": 2}, journal=path, listeners=[events.append])
    hit = finished(job)
    assert calls == []
    assert hit.ctx["report"] == first.ctx["report"]
    assert hit.attempts == {"load": 0, "report": 0}
    cached = [(e.task, e.old_state, e.new_state) for e in events if getattr(e, "cached", False)]
    assert cached == [
        ("load", TaskState.READY, TaskState.COMPLETED),
        ("report", TaskState.READY, TaskState.COMPLETED),
    ]
    # "n" is read by load: a miss, and report's input changes too.
    miss = finished(d.run(caching(calls), ctx={"n": 5}, journal=path))
    assert calls == ["load", "report"]
    assert miss.ctx["report"] == 11
    reasons = [e["reason"] for e in logs if e["event"] == "cache_miss"]
    assert "ctx key 'n' changed" in reasons
    assert "ctx key 'rows' changed" in reasons


def test_a_cache_needs_the_same_definition_and_forget_invalidates_it(path: Path) -> None:
    calls: list[str] = []
    finished(d.run(caching(calls), ctx={"n": 1}, journal=path))
    calls.clear()
    changed = caching(calls)
    changed[0] = Task("load", changed[0].fn, cache=True, version="2")
    finished(d.run(changed, ctx={"n": 1}, journal=path))
    assert calls == ["load"]  # report read the same rows: still a hit
    calls.clear()
    with Journal(path) as journal:
        assert journal.forget(task="report") >= 1
    finished(d.run(changed, ctx={"n": 1}, journal=path))
    assert calls == ["report"]


def test_a_task_that_iterates_the_ctx_read_every_key(path: Path) -> None:
    calls: list[str] = []

    def everything(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        calls.append("all")
        return {"count": len(dict(ctx))}

    tasks = [Task("all", everything, cache=True)]
    finished(d.run(tasks, ctx={"a": 1}, journal=path))
    finished(d.run(tasks, ctx={"a": 1}, journal=path))
    assert calls == ["all"]
    finished(d.run(tasks, ctx={"a": 1, "b": 2}, journal=path))
    assert calls == ["all", "all"]


def test_a_value_that_cannot_be_hashed_makes_the_task_uncacheable_with_one_warning(
    path: Path, logs: list[dict[str, Any]]
) -> None:
    calls: list[str] = []

    def reads_lock(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        calls.append("x")
        assert ctx["lock"] is not None
        return {"x": 1}

    tasks = [Task("x", reads_lock, cache=True)]
    ctx = {"lock": threading.Lock()}
    finished(d.run(tasks, ctx=ctx, journal=path))
    finished(d.run(tasks, ctx=ctx, journal=path))
    assert calls == ["x", "x"]
    warnings = [e for e in logs if e["event"] == "cache_unhashable"]
    assert len(warnings) == 2  # one per job that recorded it
    assert warnings[0]["task"] == "x"
    assert warnings[0]["key"] == "'lock'"
