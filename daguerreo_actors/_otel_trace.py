"""TracingListener: a job as an OpenTelemetry trace, one span per attempt.

Message flow: ``run()`` calls :meth:`TracingListener.job_starting` on the
caller's thread, which keeps the caller's active context (so the job span
becomes a child of the span a web request or a script has open) and the
job's dependencies. Events then arrive on the listener's own proxy thread
(never the job's): the job's IDLE -> RUNNING starts the job span; a task's
READY -> RUNNING starts an attempt span, child of the job span (a mapped
task's child: of its parent's attempt), linked to the spans that produced
its inputs; the attempt's end state ends it; a restored or cached output is
a zero-length span. The job's end ends whatever is still open, then the
job span.

Nothing from the ctx or a result goes into a span unless the job runs with
``log_values=True``: by default an attempt carries its result's keys, and a
failed one its exception's type, message and traceback lines (the code, not
the frames' locals), as the structured log does.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TracerProvider

from daguerreo_actors import __version__
from daguerreo_actors._errors import invalid_result_message
from daguerreo_actors._events import Event, JobEvent, JobInfo, TaskEvent
from daguerreo_actors._logging import result_keys
from daguerreo_actors._otel_names import (
    ATTEMPT,
    ATTEMPT_ENDS,
    CACHED,
    ERROR_MESSAGE,
    ERROR_TYPE,
    INSTRUMENTATION,
    JOB_RESULTS,
    MAPPED_FROM,
    PIPELINE_NAME,
    PIPELINE_RESULT,
    PIPELINE_RUN_ID,
    QUEUE_WAIT,
    REASON,
    RESTORED,
    RESULT,
    RESULT_KEYS,
    RETRY_IN,
    STATE,
    TASK_NAME,
    TASK_RESULTS,
    TASK_RUN_ID,
    TASK_RUN_RESULT,
    job_span_name,
    mapped_parent,
)
from daguerreo_actors._states import JobState, TaskState
from daguerreo_actors._text import cut, safe_repr, safe_str

#: The most characters of a message or value put in one attribute.
TEXT_LIMIT = 2_000
#: The most of an output's keys an attempt's span lists.
KEYS_LIMIT = 100


def _ns(timestamp: float) -> int:
    return int(timestamp * 1e9)


class TracingListener:
    """A listener that records each job as a trace; see the module docstring.

    One instance may serve any number of jobs, at once or one after another
    (``run(tasks, listeners=[tracing])``). ``tracer_provider`` defaults to
    the global one (``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(
            INSTRUMENTATION, __version__, tracer_provider=tracer_provider
        )
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobTrace] = {}

    def job_starting(self, info: JobInfo) -> None:
        """Keep the caller's context and the job's graph (called by ``run()``)."""
        job = _JobTrace(self._tracer, info.job_id, info, otel_context.get_current())
        with self._lock:
            self._jobs[info.job_id] = job

    def __call__(self, event: Event) -> None:
        with self._lock:
            job = self._jobs.get(event.job_id)
            if job is None:  # events replayed by hand: no graph, no parent
                job = self._jobs[event.job_id] = _JobTrace(
                    self._tracer, event.job_id, None, otel_context.Context()
                )
        if job.take(event):
            with self._lock:
                self._jobs.pop(event.job_id, None)

    @property
    def open_jobs(self) -> int:
        """Jobs whose span has not ended yet."""
        with self._lock:
            return len(self._jobs)


class _JobTrace:
    """The spans of one job; fed its events in order, by one thread at a time."""

    def __init__(
        self,
        tracer: trace.Tracer,
        job_id: str,
        info: JobInfo | None,
        parent: otel_context.Context,
    ) -> None:
        self._tracer = tracer
        self._job_id = job_id
        self._info = info
        self._parent = parent
        self._log_values = info is not None and info.log_values
        self._span: Span | None = None
        self._context = parent
        self._open: dict[str, Span] = {}
        self._ready_at: dict[str, float] = {}
        #: The span of each task's completed attempt (or restored output).
        self._produced: dict[str, SpanContext] = {}

    def take(self, event: Event) -> bool:
        """Record ``event``; True once the job has ended."""
        if isinstance(event, JobEvent):
            return self._job(event)
        if self._span is None:
            self._start_job(event.timestamp)
        new = event.new_state
        if new is TaskState.READY:
            self._ready_at[event.task] = event.timestamp
        elif new is TaskState.RUNNING:
            self._start_attempt(event)
        elif event.old_state is TaskState.RUNNING and new in ATTEMPT_ENDS:
            self._end_attempt(event)
        elif new is TaskState.COMPLETED:  # restored from a journal, or a cache hit
            self._restored(event)
        return False

    # -- the job ---------------------------------------------------------------

    def _start_job(self, timestamp: float) -> None:
        attributes: dict[str, Any] = {PIPELINE_RUN_ID: self._job_id}
        if self._info is not None and self._info.name:
            attributes[PIPELINE_NAME] = self._info.name
        self._span = self._tracer.start_span(
            job_span_name(self._job_id, self._info),
            context=self._parent,
            start_time=_ns(timestamp),
            attributes=attributes,
        )
        self._context = trace.set_span_in_context(self._span, self._parent)

    def _job(self, event: JobEvent) -> bool:
        if self._span is None:
            self._start_job(event.timestamp)
        if not event.new_state.is_terminal:
            return False
        end = _ns(event.timestamp)
        for attempt in self._open.values():  # none in practice: every attempt ends first
            attempt.set_attribute(STATE, "abandoned")
            attempt.end(end_time=end)
        self._open.clear()
        span = self._span
        assert span is not None
        span.set_attribute(PIPELINE_RESULT, JOB_RESULTS[event.new_state])
        span.set_attribute(STATE, event.new_state.value)
        if event.new_state in (JobState.FAILED, JobState.TIMED_OUT):
            span.set_attribute(ERROR_TYPE, event.new_state.value)
            span.set_status(Status(StatusCode.ERROR, f"job {event.new_state.value}"))
        span.end(end_time=end)
        return True

    # -- attempts ----------------------------------------------------------------

    def _attributes(self, task: str, attempt: int) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            TASK_NAME: task,
            TASK_RUN_ID: f"{self._job_id}/{task}/{attempt}",
            PIPELINE_RUN_ID: self._job_id,
            ATTEMPT: attempt,
        }
        parent = mapped_parent(task, self._info)
        if parent is not None:
            attributes[MAPPED_FROM] = parent
        return attributes

    def _links(self, task: str) -> list[Link]:
        info = self._info
        if info is None:
            return []
        parent = mapped_parent(task, info)
        deps = info.dependencies.get(task if parent is None else parent, ())
        return [Link(self._produced[d]) for d in deps if d in self._produced]

    def _parent_of(self, task: str) -> otel_context.Context:
        parent = mapped_parent(task, self._info)
        span = None if parent is None else self._open.get(parent)
        return self._context if span is None else trace.set_span_in_context(span, self._context)

    def _start_attempt(self, event: TaskEvent) -> None:
        attributes = self._attributes(event.task, event.attempt)
        ready_at = self._ready_at.pop(event.task, None)
        if ready_at is not None:
            attributes[QUEUE_WAIT] = max(0.0, event.timestamp - ready_at)
        self._open[event.task] = self._begin(event, attributes)

    def _begin(self, event: TaskEvent, attributes: dict[str, Any] | None = None) -> Span:
        """The span of the attempt ``event`` starts: under its parent, linked to its inputs."""
        return self._tracer.start_span(
            event.task,
            context=self._parent_of(event.task),
            links=self._links(event.task),
            start_time=_ns(event.timestamp),
            attributes=attributes,
        )

    def _end_attempt(self, event: TaskEvent) -> None:
        span = self._open.pop(event.task, None)
        if span is None:
            return
        try:
            self._describe(span, event)
        finally:  # whatever went wrong describing it, the span ends
            span.end(end_time=_ns(event.timestamp))

    def _describe(self, span: Span, event: TaskEvent) -> None:
        new = event.new_state
        # One set_attributes call: each call takes the span's lock and checks
        # every value (the SDK's cost, most of this listener's).
        attributes: dict[str, Any] = {STATE: new.value, TASK_RUN_RESULT: TASK_RESULTS[new]}
        if event.retry_in is not None:
            attributes[RETRY_IN] = event.retry_in
        if event.reason is not None:
            attributes[REASON] = event.reason
        status: Status | None = None
        if new is TaskState.COMPLETED:
            self._completed(span, event, attributes)
        elif event.exception is not None:
            status = self._failed(span, event.exception, attributes)
        elif new is TaskState.TIMED_OUT:
            attributes[ERROR_TYPE] = "timeout"
            status = Status(StatusCode.ERROR, f"timed out ({event.reason or 'deadline'})")
        elif new is TaskState.INVALID_RESULT:
            message = cut(
                invalid_result_message(event.task, event.result, with_value=self._log_values),
                TEXT_LIMIT,
            )
            attributes[ERROR_TYPE] = "invalid_result"
            attributes[ERROR_MESSAGE] = message
            status = Status(StatusCode.ERROR, message)
        elif new is TaskState.FAILED:
            attributes[ERROR_TYPE] = "failed"
            status = Status(StatusCode.ERROR, "a mapped child failed")
        span.set_attributes(attributes)
        if status is not None:
            span.set_status(status)

    def _completed(self, span: Span, event: TaskEvent, attributes: dict[str, Any]) -> None:
        self._produced[event.task] = span.get_span_context()
        result = event.result
        try:  # as the log shows them; a 100,000-key output is not a 100,000-item attribute
            keys = [cut(key, TEXT_LIMIT // 10) for key in result_keys(result, KEYS_LIMIT)]
        except BaseException:  # noqa: BLE001 - a result's keys are user objects
            keys = []
        attributes[RESULT_KEYS] = keys
        if self._log_values:
            attributes[RESULT] = cut(safe_repr(result), TEXT_LIMIT)

    def _failed(self, span: Span, exc: BaseException, attributes: dict[str, Any]) -> Status:
        kind = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            kind = f"{module}.{kind}"
        message = cut(safe_str(exc), TEXT_LIMIT)
        try:  # the frames' code lines only: no locals, and no __str__ called
            stack = "".join(traceback.format_tb(exc.__traceback__))
        except BaseException:  # noqa: BLE001 - a hostile traceback must not stop us
            stack = ""
        span.add_event(
            "exception",
            {
                "exception.type": kind,
                "exception.message": message,
                "exception.stacktrace": cut(stack, 4 * TEXT_LIMIT),
            },
        )
        attributes[ERROR_TYPE] = kind
        attributes[ERROR_MESSAGE] = message
        return Status(StatusCode.ERROR, f"{kind}: {message}")

    def _restored(self, event: TaskEvent) -> None:
        attributes = self._attributes(event.task, event.attempt)
        attributes[STATE] = TaskState.COMPLETED.value
        attributes[TASK_RUN_RESULT] = "success"
        attributes[RESTORED if event.restored else CACHED] = True
        span = self._begin(event)
        self._completed(span, event, attributes)
        span.set_attributes(attributes)
        span.end(end_time=_ns(event.timestamp))
