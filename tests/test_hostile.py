"""Nothing a user supplies can stall or kill the scheduler, and the default output leaks nothing.

The rule: the job's deadline and ``cancel()`` are honoured, and ``get()``
returns, within 100 ms of the moment they are due, whatever user code does
at that moment (a listener, a structlog processor, an executor's
``submit``, a key's ``__hash__``, an exception's ``__str__``). What user
code raises is charged to the task it belongs to.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pykka
import structlog
import tier_tasks
from helpers import WAIT

import daguerreo_actors as d
from daguerreo_actors import JobState, Task, TaskState

#: How late past its deadline a job may resolve (the rule's 100 ms).
MARGIN = 0.1


def noop(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
    return {}


def waits(release: threading.Event) -> Callable[..., dict[str, Any]]:
    def fn(_ctx: Mapping[str, Any], _is_active: Callable[[], bool]) -> dict[str, Any]:
        release.wait(WAIT)
        return {}

    return fn


def resolves_within(job: d.Job, deadline: float) -> d.JobResult:
    """``job.get()``, asserting it returned at most MARGIN after ``deadline``."""
    result = job.get(timeout=WAIT)
    late = time.monotonic() - deadline
    assert late <= MARGIN, f"get() returned {late * 1000:.0f} ms after the deadline"
    return result


# -- the rule, per kind of user code ------------------------------------------------


def test_a_blocking_listener_never_delays_the_job_deadline() -> None:
    release = threading.Event()

    def stuck(_event: d.Event) -> None:
        release.wait(WAIT)

    blocker = threading.Event()
    try:
        started = time.monotonic()
        job = d.run([Task("a", waits(blocker))], timeout=0.3, listeners=[stuck])
        result = resolves_within(job, started + 0.3)
    finally:
        release.set()
        blocker.set()
    assert result.state is JobState.TIMED_OUT


def test_a_blocking_structlog_processor_never_delays_the_job_deadline() -> None:
    release = threading.Event()

    def stuck(_logger: Any, _name: str, entry: dict[str, Any]) -> dict[str, Any]:
        release.wait(WAIT)
        return entry

    structlog.configure(
        processors=[stuck, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
    )
    blocker = threading.Event()
    try:
        started = time.monotonic()
        job = d.run([Task("a", waits(blocker)), Task("b", noop)], timeout=0.3)
        result = resolves_within(job, started + 0.3)
    finally:
        release.set()
        blocker.set()
    assert result.state is JobState.TIMED_OUT
    assert result.task_states["b"] is TaskState.COMPLETED


class BlockingExecutor(ThreadPoolExecutor):
    """An executor whose ``submit`` blocks until released (a bounded one, full)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(1)
        self.release = release

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.release.wait(WAIT)
        return super().submit(fn, *args, **kwargs)


def test_an_executor_whose_submit_blocks_never_delays_the_job_deadline() -> None:
    release = threading.Event()
    executor = BlockingExecutor(release)
    try:
        started = time.monotonic()
        job = d.run([Task("a", noop)], timeout=0.3, executor=executor)
        result = resolves_within(job, started + 0.3)
    finally:
        release.set()
        executor.shutdown(wait=True)
    assert result.state is JobState.TIMED_OUT


class InlineExecutor(ThreadPoolExecutor):
    """An executor that runs the call inside ``submit``."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def test_an_executor_that_runs_the_call_inside_submit_never_delays_the_job_deadline() -> None:
    release = threading.Event()
    executor = InlineExecutor(1)
    try:
        started = time.monotonic()
        job = d.run([Task("a", waits(release))], timeout=0.3, executor=executor)
        result = resolves_within(job, started + 0.3)
    finally:
        release.set()
        executor.shutdown(wait=True)
    assert result.state is JobState.TIMED_OUT


class SlowSecondHash:
    """A key whose ``__hash__`` blocks from its second call on."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.calls = 0

    def __hash__(self) -> int:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(WAIT)
        return 7

    def __eq__(self, other: object) -> bool:
        return self is other


def test_a_key_whose_hash_blocks_never_delays_the_job_deadline() -> None:
    release = threading.Event()
    key = SlowSecondHash(release)
    try:
        started = time.monotonic()
        job = d.run([Task("a", lambda _c, _i: {key: 1})], timeout=0.3)
        result = resolves_within(job, started + 0.3)
    finally:
        release.set()
    assert result.state is JobState.TIMED_OUT
    assert key.calls >= 2  # the merge did reach the blocking call


class SlowStr(Exception):  # noqa: N818 - what a user might write
    release = threading.Event()

    def __str__(self) -> str:
        SlowStr.release.wait(WAIT)
        return "finally"


def test_an_exception_whose_str_blocks_never_delays_the_job_deadline(
    logs: list[dict[str, Any]],
) -> None:
    def raises(_c: Mapping[str, Any], _i: Callable[[], bool]) -> dict[str, Any]:
        raise SlowStr()

    blocker = threading.Event()
    try:
        started = time.monotonic()
        job = d.run([Task("a", raises, max_retries=0), Task("b", waits(blocker))], timeout=0.3)
        result = job.get(timeout=WAIT)
        # The failure ended the job long before the deadline.
        assert time.monotonic() - started < 0.3 + MARGIN
    finally:
        SlowStr.release.set()
        blocker.set()
    assert result.state is JobState.FAILED
    assert isinstance(result.exception, SlowStr)


def test_cancel_is_honoured_at_once_while_a_listener_blocks() -> None:
    release = threading.Event()
    blocker = threading.Event()

    def stuck(_event: d.Event) -> None:
        release.wait(WAIT)

    try:
        job = d.run([Task("a", waits(blocker))], listeners=[stuck])
        time.sleep(0.05)
        asked = time.monotonic()
        assert job.cancel()
        result = resolves_within(job, asked)
    finally:
        release.set()
        blocker.set()
    assert result.state is JobState.CANCELLED


# -- actors stopped from outside ----------------------------------------------------


def test_stop_all_during_a_job_with_a_listener_resolves_it_cancelled_and_says_why() -> None:
    release = threading.Event()
    job = d.run([Task("s", waits(release))], listeners=[lambda _e: None])
    time.sleep(0.05)
    try:
        pykka.ActorRegistry.stop_all(timeout=5)
        result = job.get(timeout=5)
    finally:
        release.set()
    assert result.state is JobState.CANCELLED
    assert isinstance(result.exception, d.InternalError)
    assert "listener" in str(result.exception)
    assert result.task_states["s"] is TaskState.CANCELLED


def test_stop_all_during_a_job_with_a_timeout_resolves_it_cancelled_and_says_why() -> None:
    release = threading.Event()
    job = d.run([Task("s", waits(release), timeout=60)], timeout=60)
    time.sleep(0.05)
    try:
        pykka.ActorRegistry.stop_all(timeout=5)
        result = job.get(timeout=5)
    finally:
        release.set()
    assert result.state is JobState.CANCELLED
    assert isinstance(result.exception, d.InternalError)
    assert "supervisor" in str(result.exception)
    # The next timed job starts a supervisor of its own.
    assert d.run([Task("t", noop, timeout=5)], timeout=5).get(timeout=WAIT).ok


class Exiting(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> None:
        raise SystemExit("the user's listener exits")


def test_an_actor_listener_dying_of_system_exit_still_lets_the_job_resolve() -> None:
    # pykka answers a BaseException in an actor with stop_all().
    release = threading.Event()
    ref = Exiting.start()
    job = d.run([Task("s", waits(release))], listeners=[ref])
    try:
        result = job.get(timeout=5)
    finally:
        release.set()
    assert result.state in (JobState.CANCELLED, JobState.COMPLETED)
    if result.state is JobState.CANCELLED:
        assert isinstance(result.exception, d.InternalError)


# -- failures charged to their task ------------------------------------------------


class RaisingEq:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        raise RuntimeError("keys cannot be compared")


def test_keys_whose_eq_raises_make_the_second_writer_an_invalid_result_not_an_internal_error() -> (
    None
):
    first, second = RaisingEq(), RaisingEq()
    tasks = [Task("a", lambda _c, _i: {first: 1}), Task("b", lambda _c, _i: {second: 2}, ["a"])]
    result = d.run(tasks).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failed_task == "b"
    assert result.failure_reason is TaskState.INVALID_RESULT
    assert not isinstance(result.exception, d.InternalError)
    # Nothing half-merged (compared by identity: these keys cannot be compared).
    assert [k for k in result.ctx if k is first or k is second] == [first]


class HashOnce:
    def __init__(self) -> None:
        self.calls = 0

    def __hash__(self) -> int:
        self.calls += 1
        if self.calls > 1:
            raise TypeError("hashed twice")
        return 3


def test_a_key_whose_hash_raises_on_second_use_is_that_tasks_invalid_result() -> None:
    key = HashOnce()
    result = d.run([Task("a", lambda _c, _i: {key: 1})]).get(timeout=WAIT)
    assert result.state is JobState.FAILED
    assert result.failed_task == "a"
    assert result.failure_reason is TaskState.INVALID_RESULT


def test_is_active_in_a_process_worker_after_the_task_returned_is_false() -> None:
    with ProcessPoolExecutor(1) as pool:
        result = d.run([Task("a", tier_tasks.keeps_is_active)], executor=pool).get(timeout=WAIT)
        assert result.ok
        later = pool.submit(tier_tasks.call_kept_is_active).result(timeout=WAIT)
    assert later is False


def test_an_attempt_that_raised_is_not_active_while_its_retry_runs() -> None:
    kept: list[Callable[[], bool]] = []
    seen: list[bool] = []

    def flaky(_c: Mapping[str, Any], is_active: Callable[[], bool]) -> dict[str, Any]:
        kept.append(is_active)
        if len(kept) == 1:
            raise ValueError("first attempt")
        seen.append(kept[0]())  # the first attempt's is_active, during the retry
        return {}

    assert d.run([Task("a", flaky, max_retries=1)]).get(timeout=WAIT).ok
    assert seen == [False]
    assert kept[1]() is False  # and the retry's, once it returned


# -- the default output ------------------------------------------------------------


def unconfigured(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_huge_error_message_neither_stalls_the_default_output_nor_floods_it() -> None:
    done = unconfigured(
        "import time, daguerreo_actors as d\n"
        "def boom(c, a): raise RuntimeError('x' * 200_000)\n"
        "t = time.monotonic()\n"
        "job = d.run([d.Task('boom', boom, max_retries=1)], timeout=1)\n"
        "r = job.get(timeout=20)\n"
        "print('ELAPSED', time.monotonic() - t)\n"
        "job.wait_for_listeners(20)\n"
        "print('STATE', r.state)\n"
    )
    assert done.returncode == 0, done.stderr
    elapsed = float(done.stdout.split("ELAPSED ")[1].split()[0])
    assert elapsed < 1.0
    assert "STATE failed" in done.stdout
    assert len(done.stdout) + len(done.stderr) < 20_000


def test_three_hundred_failing_optional_tasks_all_run_within_a_job_timeout() -> None:
    done = unconfigured(
        "import daguerreo_actors as d\n"
        "def boom(c, a): raise RuntimeError('no')\n"
        "tasks = [d.Task(f't{i}', boom, max_retries=0, continue_on_failure=True)\n"
        "         for i in range(300)]\n"
        "job = d.run(tasks, timeout=5)\n"
        "r = job.get(timeout=30)\n"
        "job.wait_for_listeners(30)\n"
        "print('STATE', r.state, sum(s == 'failed' for s in r.task_states.values()))\n"
    )
    assert done.returncode == 0, done.stderr
    assert "STATE completed 300" in done.stdout


def test_a_failing_task_prints_no_locals_and_no_ctx_value_by_default() -> None:
    done = unconfigured(
        "import immutables, daguerreo_actors as d\n"
        "def boom(ctx, is_active):\n"
        "    token = ctx['api_token']\n"
        "    raise ConnectionError('refused')\n"
        "job = d.run([d.Task('fetch', boom, max_retries=1)],\n"
        "            ctx={'api_token': 'SECRET-TOKEN-0451'})\n"
        "job.get(timeout=20)\n"
        "job.wait_for_listeners(20)\n"
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "ConnectionError" in output  # the failure is shown
    assert "SECRET-TOKEN-0451" not in output
