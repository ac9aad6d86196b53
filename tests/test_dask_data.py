"""Where a Dask job's data lives: outputs stay on the workers, the ctx is rebuilt there.

The cluster runs in a process of its own (``LocalCluster`` would run its
scheduler in this one), so what this process sends and receives is the
client's traffic alone.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tier_tasks

import daguerreo_actors as d
from daguerreo_actors import Task

distributed = pytest.importorskip("distributed", reason="the [dask] extra is not installed")

pytestmark = pytest.mark.foreign_threads("Dask-", "AsyncProcess", "QueueFeederThread")
WAIT = 120.0
TESTS = Path(__file__).resolve().parent

_CLUSTER = """
import sys, distributed
cluster = distributed.LocalCluster(
    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    cluster = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert cluster.stdout is not None
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield client
    finally:
        assert cluster.stdin is not None
        cluster.stdin.close()
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait(timeout=30)


class _Traffic:
    """Bytes this process writes to and reads from TCP comms (the client's, here)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from distributed.comm import tcp

        self.sent = 0
        self.received = 0
        lock = threading.Lock()
        write, read = tcp.TCP.write, tcp.TCP.read

        async def counted_write(comm: Any, msg: Any, *args: Any, **kwargs: Any) -> int:
            n: int = await write(comm, msg, *args, **kwargs)
            with lock:
                self.sent += n
            return n

        async def counted_read(comm: Any, *args: Any, **kwargs: Any) -> Any:
            from distributed.protocol import serialize

            msg = await read(comm, *args, **kwargs)
            with lock:
                self.received += _size(msg, serialize)
            return msg

        monkeypatch.setattr(tcp.TCP, "write", counted_write)
        monkeypatch.setattr(tcp.TCP, "read", counted_read)


def _size(msg: Any, _serialize: Any) -> int:
    """About how many bytes a received message held (its bytes and strings)."""
    if isinstance(msg, bytes | bytearray | memoryview):
        return len(msg)
    if isinstance(msg, str):
        return len(msg)
    if isinstance(msg, dict):
        return sum(_size(v, _serialize) for v in msg.values())
    if isinstance(msg, list | tuple):
        return sum(_size(v, _serialize) for v in msg)
    return 8


def test_a_100_mb_output_goes_from_task_to_task_on_the_cluster_and_never_to_the_client(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic = _Traffic(monkeypatch)
    tasks = [Task("make", tier_tasks.make_big), Task("use", tier_tasks.measure_big, ["make"])]
    job = d.run(tasks, ctx={"size": 100_000_000}, executor=client, gather=False)
    result = job.get(timeout=WAIT)
    assert result.ok, result.exception
    # The poisoned value unpickles only on a worker: had it reached this
    # process, the job or the gather would have raised.
    assert isinstance(result.ctx["big"], distributed.Future)
    assert result.ctx["measured"].result(timeout=WAIT) == 100_000_000
    print(f"100 MB job: client received {traffic.received} B, sent {traffic.sent} B")
    assert traffic.received < 5_000_000, traffic.received
    assert traffic.sent < 1_000_000, traffic.sent
    with pytest.raises(ValueError, match=r"[Ww]orker"):
        result.ctx["big"].result(timeout=WAIT)  # fetched here, it cannot unpickle


def _kb_job(client: Any, n: int) -> d.JobResult:
    from bench import shapes

    spec = shapes.random_dag(n, seed=7)
    deps = {name: tuple(dependencies) for name, dependencies in spec}
    tasks = [Task(name, functools.partial(tier_tasks.add_kb, name), ds) for name, ds in spec]
    return d.run(tasks, ctx={"deps": deps}, executor=client, max_concurrency=8).get(timeout=WAIT)


def test_what_the_client_sends_grows_linearly_with_the_tasks_each_adding_a_kilobyte(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic = _Traffic(monkeypatch)
    small = _kb_job(client, 200)
    per_task = traffic.sent / 200
    traffic.sent = 0
    result = _kb_job(client, 2_000)
    assert small.ok, small.exception
    assert result.ok, result.exception
    assert len(result.ctx["t1999"]) == 1024  # gathered at the end (gather=True)
    # Shipping the ctx with each task would send 2,000 x ~1 MB on average.
    print(f"client sent {traffic.sent} bytes for 2,000 tasks, {per_task:.0f} per task at 200")
    assert traffic.sent <= 2 * 2_000 * per_task, (traffic.sent, per_task)


def test_a_task_on_the_cluster_sees_every_key_merged_before_it_across_compactions(
    client: Any,
) -> None:
    from daguerreo_actors._dask_ctx import COMPACT

    n = 3 * COMPACT
    tasks = [Task(f"c{i}", tier_tasks.count_keys, [f"c{i - 1}"] if i else []) for i in range(n)]
    result = d.run(tasks, ctx={"start": 0}, executor=client).get(timeout=WAIT)
    assert result.ok, result.exception
    # Task i sees the initial key and the i keys before it.
    assert [result.ctx[f"seen-{i + 1}"] for i in range(n)] == [i + 1 for i in range(n)]


def test_gather_false_leaves_a_future_per_key_written_on_the_cluster(client: Any) -> None:
    tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"])]
    result = d.run(tasks, ctx={"v": 0, "here": "x"}, executor=client, gather=False).get(
        timeout=WAIT
    )
    assert result.ok, result.exception
    assert result.ctx["here"] == "x"  # the initial ctx's own values
    assert isinstance(result.ctx["v"], distributed.Future)
    assert result.ctx["v"].result(timeout=WAIT) == 2


def test_a_mapped_task_on_the_cluster_gets_its_items_and_its_childrens_outputs_stay_there(
    client: Any,
) -> None:
    from daguerreo_actors._dask_ctx import OnCluster

    tasks = [
        Task("items", tier_tasks.items),
        Task("doubled", tier_tasks.double_item, ["items"], map_over="items", map_as="item"),
    ]
    events: list[d.Event] = []
    job = d.run(tasks, executor=client, listeners=[events.append])
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(WAIT)
    assert result.ok, result.exception
    assert result.ctx["doubled"] == [2, 4, 6]  # gathered at the end
    assert result.ctx["other"] == b"not fetched"
    children = [
        e.result
        for e in events
        if isinstance(e, d.TaskEvent) and e.task.startswith("doubled[") and e.result
    ]
    assert len(children) == 3
    assert all(type(output["doubled"]) is OnCluster for output in children)
    assert "2" not in "".join(repr(output) for output in children)  # no value shown


def test_gather_false_gives_one_future_for_a_mapped_tasks_collected_key(client: Any) -> None:
    tasks = [
        Task("items", tier_tasks.items),
        Task("doubled", tier_tasks.double_item, ["items"], map_over="items", map_as="item"),
    ]
    result = d.run(tasks, executor=client, gather=False).get(timeout=WAIT)
    assert result.ok, result.exception
    assert isinstance(result.ctx["doubled"], distributed.Future)
    assert result.ctx["doubled"].result(timeout=WAIT) == [2, 4, 6]


def _ours(dask_scheduler: Any) -> list[str]:
    return [str(key) for key in dask_scheduler.tasks]


def test_after_a_job_the_cluster_holds_none_of_its_outputs_though_the_job_is_kept(
    client: Any,
) -> None:
    import gc

    gc.collect()
    before = set(client.run_on_scheduler(_ours))
    tasks = [Task(f"t{i}", tier_tasks.count_keys, [f"t{i - 1}"] if i else []) for i in range(40)]
    job = d.run(tasks, ctx={"start": 0}, executor=client)
    assert job.get(timeout=WAIT).ok
    assert job.wait_stopped(WAIT)
    deadline = time.monotonic() + 10
    left = set(client.run_on_scheduler(_ours)) - before
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = set(client.run_on_scheduler(_ours)) - before
    assert not left, sorted(left)[:5]
    assert job.get(timeout=0).ok  # the job and its result are still held


def test_a_task_on_threads_in_a_dask_job_reads_a_value_made_on_the_cluster(client: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as threads:
        tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"], executor=threads)]
        result = d.run(tasks, ctx={"v": 0}, executor=client).get(timeout=WAIT)
    assert result.ok, result.exception
    assert result.ctx["v"] == 2


def test_two_dask_clients_in_one_job_are_refused_naming_the_task(client: Any) -> None:
    with distributed.Client(client.scheduler.address, timeout=60) as other:
        tasks = [Task("a", tier_tasks.inc), Task("b", tier_tasks.inc, ["a"], executor=other)]
        with pytest.raises(d.InvalidTasksError, match=r"'b'.*executor.*one Dask client"):
            d.run(tasks, ctx={"v": 0}, executor=client)


def test_gather_is_a_bool_and_only_for_a_dask_job() -> None:
    with pytest.raises(TypeError, match="gather must be a bool"):
        d.run([Task("a", tier_tasks.inc)], gather="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gather=False is for a job on a Dask cluster"):
        d.run([Task("a", tier_tasks.inc)], gather=False)


def test_with_log_values_the_events_carry_the_values_made_on_the_cluster(client: Any) -> None:
    events: list[d.Event] = []
    job = d.run(
        [Task("a", tier_tasks.inc)],
        ctx={"v": 0},
        executor=client,
        log_values=True,
        listeners=[events.append],
    )
    assert job.get(timeout=WAIT).ok
    assert job.wait_for_listeners(WAIT)
    [done] = [e for e in events if isinstance(e, d.TaskEvent) and e.new_state.value == "completed"]
    assert done.result == {"v": 1}


def test_a_task_on_the_cluster_returning_no_mapping_is_invalid_with_its_value(client: Any) -> None:
    result = d.run([Task("odd", tier_tasks.not_a_mapping)], executor=client).get(timeout=WAIT)
    assert result.failed_task == "odd"
    assert result.invalid_result == [1, 2]
