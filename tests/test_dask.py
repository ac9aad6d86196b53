"""The Dask tier on a real distributed.LocalCluster with two worker processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tier_tasks

import daguerreo_actors as d
from daguerreo_actors import JobState, Task, TaskState

# `make test` installs the [dask] extra (dev depends on it), so CI always
# runs this module; the skip only spares someone testing without the extra.
distributed = pytest.importorskip("distributed", reason="the [dask] extra is not installed")

# distributed starts threads lazily and keeps them (callbacks, offloading,
# the nanny's watchers of a restarted worker): not ours to check.
pytestmark = pytest.mark.foreign_threads("Dask-", "AsyncProcess", "QueueFeederThread")
WAIT = 60.0


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    import dask

    # allowed-failures=0: a worker lost mid-task fails the task at once, so
    # the loss reaches daguerreo_actors as an EXCEPTION of that attempt.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_tasks_run_on_the_cluster_and_results_come_back(client: Any) -> None:
    tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"]), Task("p", tier_tasks.pid)]
    result = d.run(tasks, ctx={"v": 0}, executor=client).get(timeout=WAIT)
    assert result.ok
    assert result.ctx["v"] == 2
    assert result.ctx["pid"] in set(client.run(os.getpid).values())


def _cluster_state(dask_scheduler: Any) -> tuple[list[str], list[str]]:
    extensions = dask_scheduler.extensions
    return list(extensions["variables"].variables), list(extensions["events"]._events)


def test_a_job_holds_one_variable_on_the_scheduler_no_event_per_attempt_and_leaves_nothing(
    client: Any, tmp_path: Path
) -> None:
    job = d.run(
        [Task("loop", tier_tasks.loop_until_inactive)],
        ctx={"marker": str(tmp_path / "stopped")},
        executor=client,
    )
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # created before the first submit
        variables, events = client.run_on_scheduler(_cluster_state)
        if any(job.id in name for name in variables):
            break
        time.sleep(0.01)
    assert [name for name in variables if job.id in name] == [f"daguerreo-{job.id}-abandoned"]
    assert [name for name in events if job.id in name] == []
    job.cancel()  # (the test above shows is_active() turning False)
    assert job.get(timeout=WAIT).state is JobState.CANCELLED
    while True:  # the variable's deletion is sent, not awaited
        variables, events = client.run_on_scheduler(_cluster_state)
        mine = [name for name in variables if job.id in name]
        if not mine or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert mine == []


def test_cancel_stops_a_remote_looping_task_through_is_active(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    job = d.run(
        [Task("loop", tier_tasks.loop_until_inactive)],
        ctx={"marker": str(marker)},
        executor=client,
    )
    time.sleep(0.5)
    assert not marker.exists()
    cancelled_at = time.time()
    assert job.cancel() is True
    assert job.get(timeout=WAIT).state is JobState.CANCELLED
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert float(marker.read_text()) - cancelled_at < 2.0


def test_a_task_timeout_reaches_the_remote_task(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    task = Task("loop", tier_tasks.loop_until_inactive, timeout=0.5, max_retries=0)
    started = time.time()
    result = d.run([task], ctx={"marker": str(marker)}, executor=client).get(timeout=WAIT)
    assert result.failure_reason is TaskState.TIMED_OUT
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert float(marker.read_text()) - started < 0.5 + 2.0
    assert "stopped" not in result.ctx


def test_after_kill_after_the_future_is_force_cancelled_and_the_engine_stops_waiting(
    client: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "returned"
    # Warm workers and a timeout well past a start: an attempt whose code has
    # not begun by its deadline never begins (a cold worker imports first).
    client.run(lambda: __import__("tier_tasks") and __import__("daguerreo_actors._tier_dask"))
    task = Task("stuck", tier_tasks.sleep_then_mark, timeout=0.5, max_retries=0, kill_after=0.3)
    ctx = {"marker": str(marker), "sleep": 3.0}
    job = d.run([task], ctx=ctx, executor=client)
    assert job.get(timeout=WAIT).failure_reason is TaskState.TIMED_OUT
    assert [s.task for s in job.stragglers()] == ["stuck"]
    # The force-cancel drops the task on the cluster: no straggler to wait
    # for, though the worker's thread still runs the code (a thread cannot
    # be stopped), which returns later and whose result is dropped.
    assert job.wait_stopped(timeout=WAIT)
    assert job.stragglers() == ()
    assert not marker.exists()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def test_a_worker_killed_mid_task_is_an_exception_and_the_attempt_is_retried(
    client: Any, tmp_path: Path
) -> None:
    events: list[d.Event] = []
    job = d.run(
        [Task("fragile", tier_tasks.die_once, max_retries=2)],
        ctx={"marker": str(tmp_path / "died")},
        executor=client,
        listeners=[events.append],
    )
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ok, result.exception
    assert result.ctx["survived"] is True
    assert result.attempts["fragile"] == 2
    exception = next(
        e for e in events if isinstance(e, d.TaskEvent) and e.new_state is TaskState.EXCEPTION
    )
    assert type(exception.exception).__name__ == "KilledWorker"
    client.wait_for_workers(2, timeout=WAIT)


def test_an_unpicklable_result_on_the_cluster_names_the_key(client: Any) -> None:
    result = d.run(
        [Task("locky", tier_tasks.unpicklable_result, max_retries=0)], executor=client
    ).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert "result key 'lock'" in str(result.exception)


def test_a_client_without_the_dask_extra_gets_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Client:  # looks like distributed.Client to the engine
        pass

    Client.__module__ = "distributed.client"
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"daguerreo-actors\[dask\]"):
        d.run([Task("a", tier_tasks.inc)], executor=Client())  # type: ignore[arg-type]


def test_an_exception_that_cannot_be_pickled_comes_back_from_a_worker_as_a_remote_task_error(
    client: Any,
) -> None:
    result = d.run(
        [Task("fetch", tier_tasks.raises_unpicklable, max_retries=0)], executor=client
    ).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, d.RemoteTaskError)
    assert result.exception.type_name == "tier_tasks.HoldsALock"
    assert "503 Service Unavailable" in result.exception.message
    assert "raises_unpicklable" in result.exception.remote_traceback
    assert d.run([Task("a", tier_tasks.inc)], ctx={"v": 0}, executor=client).get(timeout=WAIT).ok


def test_a_journal_on_a_dask_job_lives_in_the_client_process(client: Any, tmp_path: Path) -> None:
    journal = tmp_path / "pipeline.db"
    tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"])]
    assert d.run(tasks, ctx={"v": 0}, executor=client, journal=journal).get(timeout=WAIT).ok
    with d.Journal(journal) as opened:
        [job] = opened.jobs()
        assert (job.state, job.completed) == ("completed", 2)
    resumed = d.run(tasks, ctx={"v": 0}, executor=client, journal=journal)
    assert resumed.get(timeout=WAIT).ctx["v"] == 2


class _FakeVariable:
    """A stand-in for distributed.Variable on the worker side: what ``get`` gives."""

    outcome: Any = None

    def __init__(self, _name: str) -> None:
        pass

    def get(self, timeout: float | None = None) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "active"),
    [([], True), (["0-1"], False), (["*closed*"], False), (TimeoutError(), False)],
)
def test_is_active_on_a_worker_reads_the_jobs_abandoned_attempts(
    monkeypatch: pytest.MonkeyPatch, outcome: Any, active: bool
) -> None:
    from daguerreo_actors import _tier_dask

    monkeypatch.setattr(_tier_dask.distributed, "Variable", _FakeVariable)
    monkeypatch.setattr(_FakeVariable, "outcome", outcome)
    published: list[tuple[Any, ...]] = []
    monkeypatch.setattr(_tier_dask, "publish", lambda *args, **kw: published.append(args))
    seen: list[bool] = []

    def fn(_ctx: Any, is_active: Any) -> dict[str, Any]:
        seen.append(is_active())
        return {}

    result = _tier_dask.run_on_worker(fn, None, [], ("v", "0-1", "t", "job", False))
    assert (result == {}) is active  # an abandoned attempt never starts
    assert seen == ([True] if active else [])
    assert [kind for _job, _name, kind, *_ in published] == (["ok"] if active else ["not_run"])


def test_a_scheduler_error_in_is_active_fails_the_attempt_not_cancels_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _tier_dask

    monkeypatch.setattr(_tier_dask.distributed, "Variable", _FakeVariable)
    monkeypatch.setattr(_FakeVariable, "outcome", OSError("scheduler unreachable"))
    with pytest.raises(OSError, match="unreachable"):
        _tier_dask.run_on_worker(lambda _c, a: {"n": a()}, None, [], ("v", "0-1", "t", "j", False))


class _Report:
    def __init__(self) -> None:
        self.skipped: list[Any] = []

    def returned(self, attempt: Any, value: Any, *, here: bool = False) -> None:
        raise AssertionError("never submitted")

    def raised(self, attempt: Any, exc: BaseException, *, here: bool = False) -> None:
        raise AssertionError(f"never submitted: {exc!r}")

    def not_run(self, attempt: Any) -> None:
        self.skipped.append(attempt)


def test_a_job_that_ends_before_its_first_start_creates_no_variable(client: Any) -> None:
    import threading

    from daguerreo_actors._attempt import Attempt
    from daguerreo_actors._tier_dask import DaskTier

    tier = DaskTier(client, "ended-early")
    tier.close()
    report = _Report()
    attempt = Attempt(0, 1, "t", threading.Lock())
    tier.start(attempt, tier_tasks.inc, {"v": 0}, report)  # type: ignore[arg-type]
    assert report.skipped == [attempt]
    variables, _events = client.run_on_scheduler(_cluster_state)
    assert not [name for name in variables if "ended-early" in name]
