"""OpenTelemetry: the span tree, links, statuses and metrics of real jobs (SDK in memory)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, Ctx, IsActive, fails_once, noop
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import daguerreo_actors as d
from daguerreo_actors import Dag, JobInfo, Task
from daguerreo_actors.otel import MetricsListener, TracingListener
from daguerreo_actors.testing import VirtualClock


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def finish(job: d.Job) -> d.JobResult:
    result = job.get(timeout=WAIT)
    assert job.wait_for_listeners(timeout=WAIT)
    return result


def traced(provider: TracerProvider, tasks: list[Task], **options: Any) -> d.JobResult:
    return finish(d.run(tasks, listeners=[TracingListener(provider)], **options))


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def everything_in(span: ReadableSpan) -> str:
    """Every string a span carries: name, attributes, events, status."""
    parts = [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
    for event in span.events:
        parts += [event.name, repr(dict(event.attributes or {}))]
    return "\n".join(parts)


def test_a_job_is_one_span_with_a_child_span_per_attempt_named_for_its_task(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    traced(provider, [Task("a", noop), Task("b", noop, ["a"]), Task("c", fails_once(), ["a"])])
    spans = by_name(exporter.get_finished_spans())
    [job] = [s for name, group in spans.items() if name.startswith("job ") for s in group]
    assert job.parent is None
    assert job.attributes is not None
    job_id = job.attributes["cicd.pipeline.run.id"]
    assert job.name == f"job {str(job_id)[:8]}"
    assert job.attributes["cicd.pipeline.result"] == "success"
    assert sorted(spans) == sorted(["a", "b", "c", job.name])
    assert [s.attributes["daguerreo.attempt"] for s in spans["c"] if s.attributes] == [1, 2]
    for span in spans["a"] + spans["b"] + spans["c"]:
        assert span.parent is not None
        assert span.parent.span_id == job.context.span_id
        assert span.context.trace_id == job.context.trace_id
        assert span.attributes is not None
        assert span.attributes["cicd.pipeline.run.id"] == job_id
        assert span.attributes["daguerreo.queue_wait"] >= 0
        assert span.start_time is not None
        assert job.start_time is not None
        assert job.start_time <= span.start_time
        assert span.end_time is not None
        assert job.end_time is not None
        assert span.end_time <= job.end_time


def test_a_job_run_inside_an_active_span_is_that_spans_child(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("the-app")
    with tracer.start_as_current_span("GET /reports") as request:
        job = d.run([Task("a", noop)], listeners=[TracingListener(provider)], name="nightly")
    finish(job)
    spans = by_name(exporter.get_finished_spans())
    [job_span] = spans["nightly"]
    assert job_span.parent is not None
    assert job_span.parent.span_id == request.get_span_context().span_id
    assert job_span.context.trace_id == request.get_span_context().trace_id
    assert job_span.attributes is not None
    assert job_span.attributes["cicd.pipeline.name"] == "nightly"


def test_an_attempt_links_to_the_attempts_that_produced_its_inputs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tasks = [
        Task("left", fails_once()),
        Task("right", noop),
        Task("join", noop, ["left", "right"]),
        Task("alone", noop),
    ]
    traced(provider, tasks)
    spans = by_name(exporter.get_finished_spans())
    [join] = spans["join"]
    linked = {link.context.span_id for link in join.links}
    good_left = [s for s in spans["left"] if s.status.status_code is StatusCode.UNSET]
    assert linked == {good_left[0].context.span_id, spans["right"][0].context.span_id}
    assert spans["alone"][0].links == ()
    assert spans["left"][0].links == ()


def test_a_mapped_tasks_children_are_spans_under_its_attempt_linked_to_its_inputs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def items(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"xs": [1, 2, 3]}

    def square(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"y": ctx["item"] ** 2}

    traced(provider, [Task("items", items), Task("sq", square, ["items"], map_over="xs")])
    spans = by_name(exporter.get_finished_spans())
    [parent] = spans["sq"]
    children = [spans[f"sq[{i}]"][0] for i in range(3)]
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert [link.context.span_id for link in child.links] == [spans["items"][0].context.span_id]
        assert child.attributes is not None
        assert child.attributes["daguerreo.mapped_from"] == "sq"


def test_a_failed_attempt_has_status_error_and_its_exception_recorded_without_locals(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def broken(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        password = ctx["password"]
        raise KeyError(f"no such user (len {len(password)})")

    result = traced(
        provider, [Task("login", broken, max_retries=1)], ctx={"password": "hunter2-s3cret"}
    )
    assert result.state.value == "failed"
    spans = by_name(exporter.get_finished_spans())
    first, second = spans["login"]
    for span in (first, second):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "KeyError: 'no such user (len 14)'"
        assert span.attributes is not None
        assert span.attributes["error.type"] == "KeyError"
        assert span.attributes["cicd.pipeline.task.run.result"] == "failure"
        [event] = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "KeyError"
        assert "raise KeyError" in str(event.attributes["exception.stacktrace"])
        assert "hunter2" not in everything_in(span)
    assert first.attributes is not None
    assert first.attributes["daguerreo.retry_in"] == 0.0
    assert second.attributes is not None
    assert "daguerreo.retry_in" not in second.attributes
    [job] = [s for s in exporter.get_finished_spans() if s.name.startswith("job ")]
    assert job.status.status_code is StatusCode.ERROR
    assert job.attributes is not None
    assert job.attributes["cicd.pipeline.result"] == "failure"


def test_a_timed_out_attempt_says_so_in_its_status_and_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = VirtualClock()

    def slow(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        clock.sleep(100)
        return {}

    job = d.run(
        [Task("slow", slow, timeout=10, max_retries=0)],
        clock=clock,
        listeners=[TracingListener(provider)],
    )
    clock.advance(150)
    assert finish(job).state.value == "failed"
    [span] = by_name(exporter.get_finished_spans())["slow"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["daguerreo.state"] == "timed_out"
    assert span.attributes["cicd.pipeline.task.run.result"] == "timeout"
    assert span.attributes["daguerreo.timeout_reason"] == "deadline"
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == 10 * 10**9  # the virtual clock's time


def test_result_values_stay_out_of_spans_unless_log_values_is_set(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def secret(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"token": "tok-" + ctx["seed"]}

    traced(provider, [Task("mint", secret)], ctx={"seed": "XYZZY"})
    [span] = by_name(exporter.get_finished_spans())["mint"]
    assert span.attributes is not None
    assert span.attributes["daguerreo.result_keys"] == ("token",)
    assert not any("XYZZY" in everything_in(s) for s in exporter.get_finished_spans())
    exporter.clear()
    traced(provider, [Task("mint", secret)], ctx={"seed": "XYZZY"}, log_values=True)
    [span] = by_name(exporter.get_finished_spans())["mint"]
    assert span.attributes is not None
    assert "tok-XYZZY" in str(span.attributes["daguerreo.result"])


def test_an_output_with_many_keys_lists_only_the_first_hundred_on_its_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def wide(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {f"k{i}": i for i in range(1000)} | {"x" * 10_000: 0}

    traced(provider, [Task("wide", wide)])
    [span] = by_name(exporter.get_finished_spans())["wide"]
    assert span.attributes is not None
    keys = span.attributes["daguerreo.result_keys"]
    assert list(keys) == [f"k{i}" for i in range(100)]  # type: ignore[arg-type]


def test_restored_and_cached_outputs_are_zero_length_spans_that_dependents_link_to(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    calls: list[str] = []

    def load(ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        calls.append("load")
        return {"rows": ctx["n"] * 2}

    tasks = [Task("load", load, cache=True), Task("report", noop, ["load"])]
    path = tmp_path / "j.db"
    traced(provider, tasks, ctx={"n": 1}, journal=path)
    exporter.clear()
    traced(provider, tasks, ctx={"n": 1}, journal=path)
    assert calls == ["load"]
    spans = by_name(exporter.get_finished_spans())
    [load_span] = spans["load"]
    assert load_span.attributes is not None
    assert load_span.attributes["daguerreo.cached"] is True
    assert load_span.start_time == load_span.end_time
    [report] = spans["report"]
    assert [link.context.span_id for link in report.links] == [load_span.context.span_id]


def test_a_thousand_task_job_ends_every_span_and_leaves_no_job_open(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingListener(provider)
    tasks = [Task(f"t{i}", noop, [f"t{i // 2}"] if i else []) for i in range(1000)]
    finish(d.run(tasks, listeners=[tracing], max_concurrency=8))
    spans = exporter.get_finished_spans()
    assert len(spans) == 1001
    assert all(s.end_time is not None for s in spans)
    assert tracing.open_jobs == 0


def test_one_tracing_listener_serves_two_jobs_at_once_as_two_traces(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingListener(provider)
    gate = threading.Event()

    def held(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        assert gate.wait(WAIT)
        return {}

    first = d.run([Task("a", held), Task("b", noop, ["a"])], listeners=[tracing], name="one")
    second = d.run([Task("a", held), Task("b", noop, ["a"])], listeners=[tracing], name="two")
    gate.set()
    finish(first)
    finish(second)
    spans = by_name(exporter.get_finished_spans())
    for job_name in ("one", "two"):
        [job_span] = spans[job_name]
        mine = [
            s for s in spans["a"] + spans["b"] if s.context.trace_id == job_span.context.trace_id
        ]
        assert sorted(s.name for s in mine) == ["a", "b"]
        assert all(
            s.parent is not None and s.parent.span_id == job_span.context.span_id for s in mine
        )
    assert tracing.open_jobs == 0


def test_a_dag_name_names_the_job_and_reaches_listeners() -> None:
    seen: list[JobInfo] = []

    class Hooked:
        def job_starting(self, info: JobInfo) -> None:
            seen.append(info)

        def __call__(self, _event: object) -> None:
            pass

    dag = Dag(name="smoothie")

    @dag.task
    def blend() -> dict[str, Any]:
        return {"drink": 1}

    finish(dag.run(listeners=[Hooked()]))
    [info] = seen
    assert info.name == "smoothie"
    assert info.dependencies == {"blend": ()}
    with pytest.raises(TypeError, match="name must be a str or None, got int"):
        d.run([Task("a", noop)], name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str or None"):
        Dag(name=b"x")  # type: ignore[arg-type]


def test_the_same_listener_given_twice_is_refused() -> None:
    tracing = TracingListener()
    with pytest.raises(ValueError, match="listener #2 is listener #0 again"):
        d.run([Task("a", noop)], listeners=[tracing, print, tracing])


def test_a_job_starting_hook_that_raises_is_logged_and_the_job_runs(
    logs: list[dict[str, Any]],
) -> None:
    class Broken:
        def job_starting(self, _info: JobInfo) -> None:
            raise RuntimeError("hook broke")

        def __call__(self, _event: object) -> None:
            pass

    result = finish(d.run([Task("a", noop)], listeners=[Broken()]))
    assert result.state.value == "completed"
    [entry] = [e for e in logs if e["event"] == "listener_failed"]
    assert entry["listener"] == "#0 job_starting"


# -- metrics -------------------------------------------------------------------------------------


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_metrics_count_attempts_by_outcome_and_end_with_nothing_running_or_ready() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    listener = MetricsListener(provider)

    def items(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        return {"xs": list(range(5))}

    tasks = [
        Task("items", items),
        Task("each", noop, ["items"], map_over="xs"),
        Task("flaky", fails_once(), ["each"]),
    ]
    finish(d.run(tasks, listeners=[listener], name="m", max_concurrency=2))
    got = points(reader)

    def key(p: Any) -> tuple[Any, ...]:
        a = p.attributes
        return (a["cicd.pipeline.task.name"], a["daguerreo.outcome"], "daguerreo.mapped_child" in a)

    attempts = {key(p): p.value for p in got["daguerreo.task.attempts"]}
    # A map's children count under their parent's name: one series, not five.
    assert attempts == {
        ("items", "completed", False): 1,
        ("each", "completed", False): 1,
        ("each", "completed", True): 5,
        ("flaky", "exception", False): 1,
        ("flaky", "completed", False): 1,
    }
    durations = {key(p): p.count for p in got["daguerreo.task.attempt.duration"]}
    assert durations == attempts
    assert sum(p.count for p in got["daguerreo.task.queue_wait"]) == 9
    [running] = got["daguerreo.tasks.running"]
    assert running.value == 0
    [ready] = got["daguerreo.tasks.ready"]
    assert ready.value == 0
    [job] = got["cicd.pipeline.run.duration"]
    assert dict(job.attributes) == {"cicd.pipeline.name": "m", "cicd.pipeline.result": "success"}
    assert job.count == 1
    provider.shutdown()


def test_the_ready_gauge_shows_tasks_waiting_for_a_slot() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gate = threading.Event()
    started = threading.Event()

    def held(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        started.set()
        assert gate.wait(WAIT)
        return {}

    seen: list[Any] = []
    listener = MetricsListener(provider)

    def watch(event: Any) -> None:
        listener(event)
        if getattr(event, "new_state", None) is d.TaskState.RUNNING:
            seen.append(points(reader)["daguerreo.tasks.ready"][0].value)

    job = d.run([Task(f"t{i}", held) for i in range(4)], listeners=[watch], max_concurrency=1)
    assert started.wait(WAIT)
    gate.set()
    finish(job)
    assert seen[0] == 3  # one running, three ready
    assert points(reader)["daguerreo.tasks.ready"][0].value == 0
    provider.shutdown()


def test_one_metrics_listener_watching_two_jobs_at_once_ends_with_nothing_running_or_ready() -> (
    None
):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    listener = MetricsListener(provider)
    gate = threading.Event()

    def held(_ctx: Ctx, _a: IsActive) -> dict[str, Any]:
        assert gate.wait(WAIT)
        return {}

    jobs = [
        d.run([Task(f"t{i}", held) for i in range(6)], listeners=[listener], max_concurrency=2)
        for _ in range(2)
    ]
    gate.set()
    for job in jobs:
        finish(job)
    got = points(reader)
    assert sum(p.value for p in got["daguerreo.task.attempts"]) == 12
    assert got["daguerreo.tasks.running"][0].value == 0
    assert got["daguerreo.tasks.ready"][0].value == 0
    provider.shutdown()


def test_an_attempt_whose_running_event_was_dropped_never_makes_running_negative() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    listener = MetricsListener(provider)
    ts = d.TaskState
    listener(d.JobEvent("j", d.JobState.IDLE, d.JobState.RUNNING, 1.0))
    listener(d.TaskEvent("j", "a", ts.UNSCHEDULED, ts.READY, 0, 1.0))
    # READY -> RUNNING was dropped (a listener far behind drops events).
    listener(d.TaskEvent("j", "a", ts.RUNNING, ts.COMPLETED, 1, 2.0, result={}))
    listener(d.TaskEvent("j", "b", ts.UNSCHEDULED, ts.READY, 0, 2.0))
    listener(d.TaskEvent("j", "b", ts.READY, ts.RUNNING, 1, 2.0))
    assert points(reader)["daguerreo.tasks.running"][0].value == 1
    listener(d.TaskEvent("j", "b", ts.RUNNING, ts.COMPLETED, 1, 3.0, result={}))
    listener(d.JobEvent("j", d.JobState.RUNNING, d.JobState.COMPLETED, 3.0))
    got = points(reader)
    assert got["daguerreo.tasks.running"][0].value == 0
    assert got["daguerreo.tasks.ready"][0].value == 0
    provider.shutdown()
