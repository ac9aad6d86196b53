"""What being seen costs: OpenTelemetry listeners, and the report page in a browser.

- ``tracing_cost``: a 10k wide job with no listener, with a TracingListener,
  and with a TracingListener and a MetricsListener (the SDK: a batch span
  processor whose exporter drops the spans, an in-memory metric reader), µs
  per task: until ``get()`` returns (the job's own time) and until the
  listeners have consumed every event (``wait_for_listeners``).
- ``report_page``: the page of a 10k random DAG (every task run, one retry)
  written by ``save_html``, and opened in headless Chromium: from navigation
  to the page's script done and two frames painted.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import daguerreo_actors as d
from bench import shapes
from bench.engines import functions


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def tracing_cost(n: int = 10_000, reps: int = 5) -> dict[str, dict[str, list[float]]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from daguerreo_actors.otel import MetricsListener, TracingListener

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    spec = shapes.build("wide", n)
    fns = functions(spec, "noop")
    tasks = [d.Task(name, fns[name], deps) for name, deps in spec]
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=n * 2))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    setups = {
        "none": list[Any],
        "tracing": lambda: [TracingListener(tracer_provider)],
        "tracing+metrics": lambda: [
            TracingListener(tracer_provider),
            MetricsListener(meter_provider),
        ],
    }
    out: dict[str, dict[str, list[float]]] = {name: {"job": [], "listeners": []} for name in setups}
    order = list(setups.items())
    try:
        for rep in range(reps):
            for name, make in order if rep % 2 == 0 else order[::-1]:
                listeners = make()
                gc.collect()
                started = time.perf_counter()
                job = d.run(tasks, max_concurrency=2, listeners=listeners)
                job.get(timeout=600)
                got = time.perf_counter()
                if not job.wait_for_listeners(600):
                    raise RuntimeError(f"{name}: the listeners never consumed the events")
                done = time.perf_counter()
                out[name]["job"].append((got - started) / n * 1e6)
                out[name]["listeners"].append((done - started) / n * 1e6)
                tracer_provider.force_flush()
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    return out


def report_page(n: int = 10_000, reps: int = 3) -> dict[str, Any] | None:
    """None without chromium (the check then reads "not measured")."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    spec = shapes.build("random", n)
    fns = functions(spec, "noop")
    tasks = [d.Task(name, fns[name], deps) for name, deps in spec]
    report = d.JobReport()
    job = d.run(tasks, max_concurrency=2, listeners=[report])
    job.get(timeout=600)
    if not job.wait_for_listeners(600):
        raise RuntimeError("the report never consumed the job's events")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    writes: list[float] = []
    renders: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.html"
        for _ in range(reps):
            started = time.perf_counter()
            report.save_html(path)
            writes.append(time.perf_counter() - started)
        size = os.path.getsize(path)
        browser = webdriver.Chrome(options=options, service=Service(driver))
        try:
            browser.set_script_timeout(60)
            for _ in range(reps):
                browser.get("about:blank")
                browser.get(path.as_uri())  # returns after the load event
                painted = browser.execute_async_script(
                    "const done = arguments[0];"
                    "requestAnimationFrame(() => requestAnimationFrame(() =>"
                    " done(performance.now())));"
                )
                renders.append(float(painted) / 1000)
        finally:
            browser.quit()
    return {"n": n, "size": size, "write": writes, "render": renders}


def report_lines(
    tracing: dict[str, dict[str, list[float]]] | None, page: dict[str, Any] | None
) -> tuple[list[str], list[tuple[str, bool, str]]]:
    lines: list[str] = []
    checks: list[tuple[str, bool, str]] = []
    if tracing:
        lines += [
            "OpenTelemetry listeners (`daguerreo_actors.otel`, SDK with a batch span processor "
            "and a dropping exporter), 10k wide, conc=2, µs per task, median (min-max):",
            "",
            "| listeners | job done (`get`) | events consumed (`wait_for_listeners`) |",
            "|---|---|---|",
        ]
        for name, cost in tracing.items():
            lines.append(f"| {name} | {_spread(cost['job'])} | {_spread(cost['listeners'])} |")
        lines.append("")
        base = statistics.median(tracing["none"]["job"])
        traced = statistics.median(tracing["tracing+metrics"]["job"])
        checks.append(
            (
                "10k wide: tracing+metrics listeners do not slow the job (get) by > 1.3x",
                traced <= 1.3 * base,
                f"x{traced / base:.2f}",
            )
        )
    if page is None:
        checks.append(
            (
                "10k-task report page renders in headless Chromium in < 3 s",
                False,
                "not measured: no chromium (apt-get install -y chromium chromium-driver)",
            )
        )
    else:
        render = page["render"]
        lines += [
            f"Report page of a {page['n']:,}-task random DAG: {page['size'] / 2**20:.1f} MB, "
            f"written in {statistics.median(page['write']):.2f} s; opened in headless "
            f"Chromium, script done and painted in {statistics.median(render):.2f} s "
            f"({min(render):.2f}-{max(render):.2f}, {len(render)} loads).",
            "",
        ]
        checks += [
            (
                "10k-task report page renders in headless Chromium in < 3 s",
                statistics.median(render) < 3.0,
                f"{statistics.median(render):.2f} s",
            ),
            (
                "... and is under 10 MB",
                page["size"] < 10 * 2**20,
                f"{page['size'] / 2**20:.1f} MB",
            ),
        ]
    return lines, checks
