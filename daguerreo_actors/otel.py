"""OpenTelemetry listeners: a job as a trace, its attempts as metrics.

Needs the ``daguerreo-actors[otel]`` extra (``opentelemetry-api``; bring
your own SDK and exporter)::

    from daguerreo_actors.otel import MetricsListener, TracingListener

    run(tasks, listeners=[TracingListener(), MetricsListener()])

See the README's "Tracing and metrics" for the spans, attributes and
instruments, and ``_otel_trace.py`` / ``_otel_metrics.py`` for how events
become them.
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401 - checked here for a clear error
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        "daguerreo_actors.otel needs OpenTelemetry: pip install 'daguerreo-actors[otel]'"
    ) from exc

from daguerreo_actors._otel_metrics import MetricsListener
from daguerreo_actors._otel_trace import TracingListener

__all__ = ["MetricsListener", "TracingListener"]
