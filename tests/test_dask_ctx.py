"""The cluster ctx's log and bases, alone: a fake client that computes at once.

Whatever the order of merges and starts, a snapshot rebuilt from a base and
its entries is the client's snapshot, and no submit carries more than
``COMPACT`` entries.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("distributed", reason="the [dask] extra is not installed")

from daguerreo_actors._attempt import Attempt
from daguerreo_actors._dask_ctx import COMPACT, ClusterCtx, OnCluster, merge_entries


class _Future:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.key = f"f-{id(self)}"


class _Holder:
    def __init__(self, future: Any) -> None:
        self.future = future


def _resolve(value: Any) -> Any:
    """What Dask does to a submit's arguments: futures replaced by their data."""
    if isinstance(value, _Future):
        return value.value
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_resolve(item) for item in value)
    if isinstance(value, dict):
        return {key: _resolve(item) for key, item in value.items()}
    return value


class _Client:
    def __init__(self) -> None:
        self.submits: list[tuple[Any, ...]] = []

    def submit(self, fn: Any, *args: Any, **_kwargs: Any) -> _Future:
        self.submits.append(args)
        return _Future(fn(*_resolve(args)))


def _cluster(initial: dict[str, int]) -> tuple[ClusterCtx, _Client, dict[Attempt, _Future]]:
    client = _Client()
    cluster = ClusterCtx(client)
    futures: dict[Attempt, _Future] = {}
    cluster.future_of = futures.get
    cluster.initial(initial)
    return cluster, client, futures


# An output: from the cluster (its future), made here, or a mapped task's
# collection of cluster values (lists of placeholders).
outputs = st.lists(
    st.tuples(
        st.sampled_from(["cluster", "here", "mapped"]),
        st.dictionaries(st.sampled_from("abcdefgh"), st.integers(), max_size=3),
    ),
    max_size=60,
)


@given(outputs, st.dictionaries(st.sampled_from("axyz"), st.integers(), max_size=3), st.data())
def test_a_rebuilt_snapshot_is_the_clients_whatever_the_merges_and_starts(
    merged: list[tuple[str, dict[str, int]]], initial: dict[str, int], data: st.DataObject
) -> None:
    cluster, client, futures = _cluster(initial)
    snapshots = [dict(initial)]
    lock = threading.Lock()
    for number, (kind, output) in enumerate(merged):
        attempt = None
        given_output: dict[str, Any] = dict(output)
        if kind == "cluster":
            attempt = Attempt(number, 1, f"t{number}", lock)
            futures[attempt] = future = _Future(dict(output))
            given_output = {key: OnCluster(_Holder(future), key) for key in output}
        elif kind == "mapped":
            given_output = {
                key: [OnCluster(_Holder(_Future({key: value})), key), value]
                for key, value in output.items()
            }
            output = {key: [value, value] for key, value in output.items()}
        if output:
            cluster.committed(given_output, attempt)
            snapshots.append({**snapshots[-1], **output})
        # Start a few tasks on any snapshot so far (a start may read an old one).
        for commits in data.draw(st.lists(st.integers(0, len(snapshots) - 1), max_size=3)):
            before = len(client.submits)
            base, entries = cluster.snapshot(commits, "t")
            assert len(entries) <= COMPACT
            rebuilt = merge_entries(_resolve(base), _resolve(entries))
            assert dict(rebuilt) == snapshots[commits]
            assert len(client.submits) - before <= 1  # at most one merge task per start


def test_a_long_log_is_compacted_so_each_start_carries_a_bounded_number_of_references() -> None:
    cluster, client, futures = _cluster({"start": 0})
    lock = threading.Lock()
    for number in range(10 * COMPACT):
        attempt = Attempt(number, 1, f"t{number}", lock)
        futures[attempt] = _Future({f"k{number}": number})
        cluster.committed(
            {f"k{number}": OnCluster(_Holder(futures[attempt]), f"k{number}")}, attempt
        )
        _base, entries = cluster.snapshot(number + 1, "t")
        assert len(entries) <= COMPACT
    # One merge task per COMPACT + 1 merges, not one per start.
    assert len(client.submits) <= 10 * COMPACT // (COMPACT + 1) + 1


def test_an_initial_ctx_that_cannot_be_pickled_names_the_task_and_the_key() -> None:
    from daguerreo_actors import NotPicklableError

    cluster, _client, _futures = _cluster({"fine": 1, "lock": threading.Lock()})  # type: ignore[dict-item]
    with pytest.raises(NotPicklableError, match=r"task 'load': ctx key 'lock'"):
        cluster.snapshot(0, "load")


def test_a_placeholder_names_its_dask_key_never_its_value_and_pickles_without_it() -> None:
    import pickle

    held = OnCluster(_Holder(_Future({"secret": "value"})), "secret")
    assert "value" not in repr(held)
    assert held.future.key in repr(held)
    copy = pickle.loads(pickle.dumps(held))
    assert copy.key == "secret"
    assert copy.future is None
    assert "released" in repr(copy)


class _Report:
    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []
        self.done = threading.Event()

    def returned(self, attempt: Any, value: Any, *, here: bool = False) -> None:
        self.got.append(("returned", value))
        self.done.set()

    def raised(self, attempt: Any, exc: BaseException, *, here: bool = False) -> None:
        self.got.append(("raised", exc))
        self.done.set()

    def not_run(self, attempt: Any) -> None:
        self.got.append(("not_run", None))
        self.done.set()


class _Finished:
    status = "finished"
    key = "k"

    def result(self, timeout: float | None = None) -> Any:
        return {"v": 1}

    def done(self) -> bool:
        return True


def _handle(report: _Report) -> Any:
    from daguerreo_actors._tier_dask import DaskTier, _DaskHandle

    tier = DaskTier(_Client(), "job")  # type: ignore[arg-type]
    handle = _DaskHandle(tier, "0-1", Attempt(0, 1, "t", threading.Lock()), report)
    handle.future = _Finished()
    handle.submitted.set()
    tier._running[handle.name] = handle
    tier._outstanding = 1
    return tier, handle


def test_a_finished_attempt_whose_event_never_comes_is_fetched_and_reported_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daguerreo_actors import _tier_dask

    monkeypatch.setattr(_tier_dask, "FETCH_AFTER", 0.01)
    report = _Report()
    tier, handle = _handle(report)
    tier._done(handle, handle.future)
    assert report.done.wait(10)
    tier.received(handle.name, b"late")  # the event, after all: not reported again
    tier._done(handle, handle.future)
    assert report.got == [("returned", {"v": 1})]


def test_the_workers_event_reports_keys_with_placeholders_and_the_end_adds_nothing() -> None:
    import pickle

    report = _Report()
    tier, handle = _handle(report)
    tier.received(handle.name, pickle.dumps(("ok", ["a", "b"], {"b": 2})))
    assert report.done.wait(10)  # at once: not waiting for the future's end
    tier._done(handle, handle.future)
    time.sleep(0.05)  # a second report, if any, would have come by now
    [(kind, output)] = report.got
    assert kind == "returned"
    assert output["b"] == 2  # asked for (a mapped task's input)
    assert type(output["a"]) is OnCluster
    assert output["a"].future is handle.future


def test_a_job_whose_end_of_cluster_work_cannot_start_is_resolved_anyway() -> None:
    from daguerreo_actors._ending import _finish_then_resolve

    resolved: list[object] = []

    def broken_finish(result: object, *, then: object) -> None:
        raise RuntimeError("the pool is gone")

    with pytest.raises(RuntimeError, match="pool is gone"):  # logged by the resolve step
        _finish_then_resolve(broken_finish, resolved.append, "the result")  # type: ignore[arg-type]
    assert resolved == ["the result"]
