"""The README's example runs and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_and_makes_a_smoothie() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    state, smoothie = out.getvalue().splitlines()
    assert state == "completed"
    assert smoothie.startswith("sugar + ")
    assert sorted(smoothie.removeprefix("sugar + ")) == sorted("bananamango")


def pipeline_block() -> str:
    section = README.read_text().split("### Pipelines as functions", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1)


def test_the_readme_pipeline_example_runs() -> None:
    namespace: dict[str, object] = {"__name__": "readme_pipeline"}
    exec(compile(pipeline_block(), "README.md", "exec"), namespace)  # its asserts hold
    result = namespace["result"]
    assert getattr(result, "ok", False)


def test_the_readme_pipeline_example_passes_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "pipeline.py"
    source.write_text(pipeline_block())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_otlp_configuration_sends_the_jobs_spans_to_the_exporter() -> None:
    # The block as users copy it, with the OTLP exporters (a package we do not
    # install) replaced by in-memory ones: everything else runs as written.
    section = README.read_text().split("### Tracing and metrics", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section.split("### Report page")[0], re.DOTALL)
    block = blocks[-1]
    assert "OTLPSpanExporter(endpoint=" in block
    prelude = (
        "import sys, types\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "spans = InMemorySpanExporter()\n"
        "class OTLPSpanExporter:\n"
        "    def __new__(cls, **_options): return spans\n"
        "class OTLPMetricExporter:\n"
        "    def __init__(self, **_options): pass\n"
        "class PeriodicExportingMetricReader(InMemoryMetricReader):\n"
        "    def __init__(self, _exporter): super().__init__()\n"
        "for name, attr, value in [\n"
        "    ('opentelemetry.exporter.otlp.proto.grpc.trace_exporter', 'OTLPSpanExporter',"
        " OTLPSpanExporter),\n"
        "    ('opentelemetry.exporter.otlp.proto.grpc.metric_exporter', 'OTLPMetricExporter',"
        " OTLPMetricExporter),\n"
        "]:\n"
        "    module = types.ModuleType(name)\n"
        "    setattr(module, attr, value)\n"
        "    sys.modules[name] = module\n"
        "import opentelemetry.sdk.metrics.export as export\n"
        "export.PeriodicExportingMetricReader = PeriodicExportingMetricReader\n"
    )
    epilogue = "\nprint(sorted(s.name for s in spans.get_finished_spans()))\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + block + epilogue],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['extract', 'load', 'nightly-etl']"
