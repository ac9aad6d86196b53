"""MetricsListener: a job's attempts as OpenTelemetry metrics.

Message flow: events arrive on the listener's own proxy thread; each one
updates the instruments below at once (the SDK aggregates; its reader or
exporter decides when they leave). One instance may watch any number of
jobs; its running and ready figures are the totals over the jobs it
watches.

Instruments (attributes in brackets; ``task`` is ``cicd.pipeline.task.name``,
for a mapped task's child its parent's, ``sq`` for ``sq[3]``, with
``daguerreo.mapped_child=true``: a 10,000-item map is one series, not
10,000):

- ``daguerreo.task.attempts`` counter [task, outcome]: attempts ended, by
  end state (``completed``, ``exception``, ``timed_out``, ...);
- ``daguerreo.task.attempt.duration`` histogram, s [task, outcome];
- ``daguerreo.task.queue_wait`` histogram, s [task]: READY to RUNNING;
- ``daguerreo.tasks.running`` up-down counter [-]: attempts running now,
  holding a slot (a mapped task does not: its children do);
- ``daguerreo.tasks.ready`` gauge [-]: tasks READY and waiting for a slot;
- ``cicd.pipeline.run.duration`` histogram, s [cicd.pipeline.name,
  cicd.pipeline.result]: the CI/CD convention's metric, one per job.

No job id goes into an attribute: it would make a series per job.
"""

from __future__ import annotations

import threading

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from daguerreo_actors import __version__
from daguerreo_actors._events import Event, JobEvent, JobInfo, TaskEvent
from daguerreo_actors._otel_names import (
    ATTEMPT_ENDS,
    INSTRUMENTATION,
    JOB_RESULTS,
    MAPPED_CHILD,
    OUTCOME,
    PIPELINE_NAME,
    PIPELINE_RESULT,
    TASK_NAME,
    mapped_parent,
)
from daguerreo_actors._states import JobState, TaskState


class MetricsListener:
    """A listener that records attempts as metrics; see the module docstring.

    ``meter_provider`` defaults to the global one
    (``opentelemetry.metrics.set_meter_provider``).
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter(INSTRUMENTATION, __version__, meter_provider=meter_provider)
        self._attempts = meter.create_counter(
            "daguerreo.task.attempts", unit="{attempt}", description="Attempts ended, by outcome"
        )
        self._duration = meter.create_histogram(
            "daguerreo.task.attempt.duration", unit="s", description="Run time of an attempt"
        )
        self._queue_wait = meter.create_histogram(
            "daguerreo.task.queue_wait", unit="s", description="READY to RUNNING"
        )
        self._running = meter.create_up_down_counter(
            "daguerreo.tasks.running", unit="{task}", description="Attempts running now"
        )
        self._ready = meter.create_gauge(
            "daguerreo.tasks.ready", unit="{task}", description="Tasks ready, waiting for a slot"
        )
        self._job_duration = meter.create_histogram(
            "cicd.pipeline.run.duration", unit="s", description="Wall time of a job"
        )
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobCounts] = {}
        self._ready_total = 0

    def job_starting(self, info: JobInfo) -> None:
        """Keep the job's name and graph (called by ``run()``)."""
        with self._lock:
            self._jobs[info.job_id] = _JobCounts(info)

    def __call__(self, event: Event) -> None:
        with self._lock:
            job = self._jobs.get(event.job_id)
            if job is None:
                job = self._jobs[event.job_id] = _JobCounts(None)
        if isinstance(event, JobEvent):
            self._job(job, event)
        else:
            self._task(job, event)

    def _job(self, job: _JobCounts, event: JobEvent) -> None:
        if event.new_state is JobState.RUNNING:
            job.started_at = event.timestamp
            return
        if not event.new_state.is_terminal:
            return
        # Whatever is still counted (none in practice) leaves with the job.
        slots = [task for task in job.running if task not in job.mapped]
        if slots:
            self._running.add(-len(slots))
        self._set_ready(-len(job.ready_at))
        with self._lock:
            self._jobs.pop(event.job_id, None)
        attributes = {PIPELINE_RESULT: JOB_RESULTS[event.new_state]}
        if job.info is not None and job.info.name:
            attributes[PIPELINE_NAME] = job.info.name
        if job.started_at is not None:
            self._job_duration.record(
                max(0.0, event.timestamp - job.started_at), attributes=attributes
            )

    def _task(self, job: _JobCounts, event: TaskEvent) -> None:
        parent = mapped_parent(event.task, job.info)
        labels: dict[str, str | bool] = {TASK_NAME: parent or event.task}
        if parent is not None:
            labels[MAPPED_CHILD] = True
        if event.old_state is TaskState.READY:
            ready_at = job.ready_at.pop(event.task, None)
            self._set_ready(-1 if ready_at is not None else 0)
            if event.new_state is TaskState.RUNNING and ready_at is not None:
                self._queue_wait.record(max(0.0, event.timestamp - ready_at), attributes=labels)
        if event.new_state is TaskState.READY:
            job.ready_at[event.task] = event.timestamp
            self._set_ready(1)
        elif event.new_state is TaskState.RUNNING:
            job.running[event.task] = event.timestamp
            if event.task not in job.mapped:  # a mapped task holds no slot: its children do
                self._running.add(1)
        elif event.old_state is TaskState.RUNNING and event.new_state in ATTEMPT_ENDS:
            started = job.running.pop(event.task, None)
            if started is None:  # its RUNNING event was dropped (a listener far behind)
                return
            attributes = {**labels, OUTCOME: event.new_state.value}
            if event.task not in job.mapped:
                self._running.add(-1)
            self._attempts.add(1, attributes=attributes)
            self._duration.record(max(0.0, event.timestamp - started), attributes=attributes)

    def _set_ready(self, change: int) -> None:
        if not change:
            return
        with self._lock:  # set under the lock: two jobs' proxies never set out of order
            self._ready_total += change
            self._ready.set(self._ready_total)


class _JobCounts:
    """What one job has READY and RUNNING, with the times they got there."""

    __slots__ = ("info", "mapped", "ready_at", "running", "started_at")

    def __init__(self, info: JobInfo | None) -> None:
        self.info = info
        self.mapped = frozenset() if info is None else info.mapped
        self.started_at: float | None = None
        self.ready_at: dict[str, float] = {}
        self.running: dict[str, float] = {}
