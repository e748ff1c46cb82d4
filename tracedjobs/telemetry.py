"""Everything that knows OpenTelemetry names: spans, instruments and their attributes.

The library uses only the OpenTelemetry API: with no SDK configured every call here is a
cheap no-op. The rest of tracedjobs calls the hooks below and never imports opentelemetry.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from tracedjobs.jobs import Job

logger = logging.getLogger(__name__)

SYSTEM = "tracedjobs"
INSTRUMENTATION_NAME = "tracedjobs"

# Attribute names (OTel messaging semantic conventions, plus our own namespace).
MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"
TASK = "tracedjobs.task.name"
ATTEMPT = "tracedjobs.job.attempt"
OUTCOME = "tracedjobs.job.outcome"
ERROR_TYPE = "error.type"
WORKER_ID = "tracedjobs.worker.id"
ARGS = "tracedjobs.job.args"  # only with App(record_args=True)
WORKER_NAME = "tracedjobs.worker.name"

# Seconds: the semconv boundaries (5 ms … 10 s) extended to hours, so that a 42 ms job
# lands near 50 ms and a 40-minute job is not lumped with a 10-second one.
DURATION_BUCKETS: Sequence[float] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip

_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
_meter = metrics.get_meter(INSTRUMENTATION_NAME)

sent_messages = _meter.create_counter(
    "messaging.client.sent.messages", unit="{message}", description="Jobs deferred."
)
consumed_messages = _meter.create_counter(
    "messaging.client.consumed.messages",
    unit="{message}",
    description="Attempts finished, by outcome.",
)
process_duration = _meter.create_histogram(
    "messaging.process.duration",
    unit="s",
    description="Duration of one attempt of a job.",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)
queue_wait = _meter.create_histogram(
    "tracedjobs.job.queue_wait",
    unit="s",
    description="Time from when a job became runnable (scheduled_at, else deferral) to its start.",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)


def _metric_attributes(queue: str, task_name: str) -> dict[str, Any]:
    return {MESSAGING_SYSTEM: SYSTEM, DESTINATION: queue, TASK: task_name}


# -- producer side -----------------------------------------------------------------------


@dataclass
class TraceCarrier:
    traceparent: str | None = None
    tracestate: str | None = None


@contextlib.contextmanager
def send_span(queue: str, task_name: str, count: int) -> Iterator[list[TraceCarrier]]:
    """PRODUCER span ``send {queue}`` around a defer; yields one trace carrier per job.

    A single job stores the send span's own context. A batch follows the messaging
    conventions for batches: one ``create {queue}`` span per job (child of the send span),
    each job storing its own creation context.
    """
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
        DESTINATION: queue,
        TASK: task_name,
    }
    if count > 1:
        attributes[BATCH_COUNT] = count
    with _tracer.start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        if not span.get_span_context().is_valid:
            yield [TraceCarrier() for _ in range(count)]
            return
        if count == 1:
            yield [_current_carrier()]
            return
        carriers = []
        for _ in range(count):
            with _tracer.start_as_current_span(
                f"create {queue}",
                kind=SpanKind.PRODUCER,
                attributes={**attributes, OPERATION_TYPE: "create", OPERATION_NAME: "create"},
            ):
                carriers.append(_current_carrier())
        yield carriers


def _current_carrier() -> TraceCarrier:
    headers: dict[str, str] = {}
    inject(headers)
    return TraceCarrier(headers.get("traceparent"), headers.get("tracestate"))


def set_job_ids(job_ids: Sequence[int]) -> None:
    """Put the message id on the current send span once the database gave it."""
    span = trace.get_current_span()
    if len(job_ids) == 1 and span.is_recording():
        span.set_attribute(MESSAGE_ID, str(job_ids[0]))


def record_sent(queue: str, task_name: str, count: int) -> None:
    """Count deferred jobs, when the INSERT that creates them succeeds.

    Inside the caller's own transaction (``connection=``) that is before its commit:
    tracedjobs cannot see a psycopg commit without a thread or a query of its own, and
    telemetry has neither. The messaging conventions count *attempts* to send, so a defer
    whose transaction rolls back is counted too (and is never consumed).
    """
    sent_messages.add(count, _metric_attributes(queue, task_name))


# -- consumer side -----------------------------------------------------------------------


_warned_bad_context = False


def _producer_context(job: Job) -> trace.SpanContext | None:
    global _warned_bad_context
    if not job.traceparent:
        return None
    carrier = {"traceparent": job.traceparent}
    if job.tracestate:
        carrier["tracestate"] = job.tracestate
    span_context = trace.get_current_span(extract(carrier)).get_span_context()
    if not span_context.is_valid:
        if not _warned_bad_context:
            _warned_bad_context = True
            logger.warning(
                "job %s has an invalid stored trace context %r; running it without a link",
                job.id,
                job.traceparent,
            )
        return None
    return span_context


@dataclass
class AttemptSpan:
    """Handle on the consumer span of one attempt."""

    span: trace.Span
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_id(self) -> str | None:
        ctx = self.span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    @property
    def span_id(self) -> str | None:
        ctx = self.span.get_span_context()
        return format(ctx.span_id, "016x") if ctx.is_valid else None

    def finish_discarded(self) -> None:
        """The attempt's result arrived after a rescue recorded it lost: say so on the span."""
        if self.span.is_recording():
            self.span.set_attribute(OUTCOME, "lost")
            self.span.set_attribute("tracedjobs.job.late_result_discarded", True)

    def finish(
        self, outcome: str, exception: BaseException | None = None, error_type: str | None = None
    ) -> None:
        if not self.span.is_recording():
            return
        self.span.set_attribute(OUTCOME, outcome)
        if exception is not None:
            try:
                self.span.record_exception(exception)
            except Exception:  # its __str__ raised: record what can be said safely
                self.span.add_event(
                    "exception",
                    {"exception.type": error_type_of(exception), "exception.message": ""},
                )
        if error_type is not None:
            self.span.set_attribute(ERROR_TYPE, error_type)
            description = f"{error_type}: {_safe_str(exception)}"[:200]
            self.span.set_status(Status(StatusCode.ERROR, description))


@contextlib.contextmanager
def process_span(
    job: Job, *, worker_name: str, trace_parent: str = "link", record_args: bool = False
) -> Iterator[AttemptSpan]:
    """CONSUMER span ``process {queue}`` around one attempt.

    By default it carries a Link to the producer context; ``trace_parent="parent"`` makes
    it a child of the producer span instead, so the whole story is one trace. Task
    arguments are recorded (as ``tracedjobs.job.args``, JSON) only with ``record_args``.
    """
    producer = _producer_context(job)
    parent_context = otel_context.Context()  # a new root, unless made a child below
    links: list[Link] = []
    if producer is not None:
        if trace_parent == "parent":
            parent_context = trace.set_span_in_context(trace.NonRecordingSpan(producer))
        elif producer.trace_flags.sampled:
            # An unsampled producer span was never exported: a link would point nowhere.
            links.append(Link(producer))
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: job.queue_name,
        MESSAGE_ID: str(job.id),
        # Workers of a queue compete for its jobs: the queue is the consumer group.
        CONSUMER_GROUP: job.queue_name,
        WORKER_NAME: worker_name,
        TASK: job.task_name,
        ATTEMPT: job.attempt_number,
    }
    if record_args:
        attributes[ARGS] = json.dumps(job.args, sort_keys=True, default=str)
    with _tracer.start_as_current_span(
        f"process {job.queue_name}",
        context=parent_context,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield AttemptSpan(span)


def record_attempt(
    *,
    queue: str,
    task_name: str,
    outcome: str,
    duration: float | None,
    error_type: str | None = None,
) -> None:
    """Count a finished attempt and record its duration (None for a lost attempt)."""
    attributes = _metric_attributes(queue, task_name)
    attributes[OUTCOME] = outcome
    if error_type:
        attributes[ERROR_TYPE] = error_type
    consumed_messages.add(1, attributes)
    if duration is not None:
        attributes.pop(ERROR_TYPE, None)
        process_duration.record(duration, attributes)


def record_queue_wait(queue: str, task_name: str, seconds: float) -> None:
    queue_wait.record(max(seconds, 0.0), _metric_attributes(queue, task_name))


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def error_type_of(exception: BaseException) -> str:
    """The `error.type` value: the exception's qualified class name."""
    cls = type(exception)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


# -- log correlation -----------------------------------------------------------------------

_current_job: contextvars.ContextVar[tuple[Job, AttemptSpan] | None] = contextvars.ContextVar(
    "tracedjobs_current_job", default=None
)


@contextlib.contextmanager
def job_log_context(job: Job, span: AttemptSpan) -> Iterator[None]:
    """While a job runs, log records can carry its job id, task name, trace id and span id
    (see :class:`LogContextFilter`)."""
    token = _current_job.set((job, span))
    try:
        yield
    finally:
        _current_job.reset(token)


class LogContextFilter(logging.Filter):
    """Adds ``job_id``, ``task_name``, ``trace_id`` and ``span_id`` to the records it sees.

    Inside a job they describe that job (the innermost span, e.g. one the task opened, else
    the attempt's own); outside they are empty strings, so format strings can always use
    them. Attach it to your handlers (the ``tracedjobs`` command line does so for its own):
    tracedjobs changes no process-wide logging state.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        job, attempt_span = _current_job.get() or (None, None)
        record.job_id = job.id if job else ""
        record.task_name = job.task_name if job else ""
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = (attempt_span.trace_id if attempt_span else None) or ""
            record.span_id = (attempt_span.span_id if attempt_span else None) or ""
        return True


# -- database-wide gauges ------------------------------------------------------------------
#
# Read from the database by ONE elected worker (see gauges.py), so that summing them over
# workers never double counts. The callbacks only read the last snapshot: collection
# (a Prometheus scrape, an OTLP export) never waits for the database.

WORKER_STATE = "state"  # as written in the contract (§7): alive / stale
JOB_STATUS = "tracedjobs.job.status"
HOST_NAME = "host.name"
JOB_STATUSES = ("todo", "doing", "aborting", "succeeded", "failed", "cancelled", "aborted")


@dataclass
class GaugeSnapshot:
    """What the elected worker last read from the database."""

    taken_at: float  # time.monotonic() when read
    workers_alive: int = 0
    workers_stale: int = 0
    heartbeat_ages: list[tuple[str, str, float]] = field(default_factory=list)  # id, host, s
    queue_jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status)
    oldest_age: dict[str, float] = field(default_factory=dict)  # queue -> s (0 when none ready)

    @classmethod
    def from_rows(cls, rows: dict[str, list[dict[str, Any]]], taken_at: float) -> GaugeSnapshot:
        snapshot = cls(taken_at=taken_at)
        for w in rows["workers"]:
            if w["alive"]:
                snapshot.workers_alive += 1
            else:
                snapshot.workers_stale += 1
            snapshot.heartbeat_ages.append((w["id"], w["hostname"], w["heartbeat_age"]))
        queues = {r["queue_name"] for r in rows["queue_jobs"]}
        # Every status of every known queue, zeros included: a series that drops to 0 must
        # say 0, not vanish (a vanished series keeps its last value on many dashboards).
        snapshot.queue_jobs = {(q, s): 0 for q in queues for s in JOB_STATUSES}
        for r in rows["queue_jobs"]:
            snapshot.queue_jobs[(r["queue_name"], r["status"])] = int(r["jobs"])
        snapshot.oldest_age = dict.fromkeys(queues, 0.0)
        for r in rows["oldest_ready"]:
            snapshot.oldest_age[r["queue_name"]] = float(r["age"])
        return snapshot


_gauge_lock = threading.Lock()
_gauge_owner: object | None = None
_gauge_snapshot: GaugeSnapshot | None = None


def publish_gauges(owner: object, snapshot: GaugeSnapshot) -> None:
    """The elected worker ``owner`` hands in a fresh snapshot."""
    global _gauge_owner, _gauge_snapshot
    with _gauge_lock:
        _gauge_owner, _gauge_snapshot = owner, snapshot


def withdraw_gauges(owner: object) -> None:
    """``owner`` is no longer elected: stop exporting its snapshot."""
    global _gauge_owner, _gauge_snapshot
    with _gauge_lock:
        if _gauge_owner is owner:
            _gauge_owner = _gauge_snapshot = None


def exporting_gauges(owner: object | None = None) -> bool:
    """Whether this process (or this owner) exports the database-wide gauges now."""
    with _gauge_lock:
        return _gauge_snapshot is not None and (owner is None or _gauge_owner is owner)


def metrics_enabled() -> bool:
    """Whether a real MeterProvider is installed (otherwise reading gauges is wasted work)."""
    provider = metrics.get_meter_provider()
    return not isinstance(provider, metrics.NoOpMeterProvider) and type(
        provider
    ).__name__ != "_ProxyMeterProvider"


def _snapshot() -> GaugeSnapshot | None:
    with _gauge_lock:
        return _gauge_snapshot


def _observe_workers(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _snapshot()
    if snapshot is None:
        return []
    return [
        Observation(snapshot.workers_alive, {MESSAGING_SYSTEM: SYSTEM, WORKER_STATE: "alive"}),
        Observation(snapshot.workers_stale, {MESSAGING_SYSTEM: SYSTEM, WORKER_STATE: "stale"}),
    ]


def _observe_heartbeat_age(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _snapshot()
    if snapshot is None:
        return []
    # Ages grow between refreshes: add the time since the snapshot was read.
    since = max(time.monotonic() - snapshot.taken_at, 0.0)
    return [
        Observation(age + since, {MESSAGING_SYSTEM: SYSTEM, WORKER_ID: worker_id, HOST_NAME: host})
        for worker_id, host, age in snapshot.heartbeat_ages
    ]


def _observe_queue_jobs(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _snapshot()
    if snapshot is None:
        return []
    return [
        Observation(count, {MESSAGING_SYSTEM: SYSTEM, DESTINATION: queue, JOB_STATUS: status})
        for (queue, status), count in sorted(snapshot.queue_jobs.items())
    ]


def _observe_oldest_age(options: CallbackOptions) -> Iterable[Observation]:
    snapshot = _snapshot()
    if snapshot is None:
        return []
    since = max(time.monotonic() - snapshot.taken_at, 0.0)
    return [
        Observation(age + since if age > 0 else 0.0, {MESSAGING_SYSTEM: SYSTEM, DESTINATION: queue})
        for queue, age in sorted(snapshot.oldest_age.items())
    ]


workers_gauge = _meter.create_observable_gauge(
    "tracedjobs.workers",
    callbacks=[_observe_workers],
    unit="{worker}",
    description="Registered workers by state (alive/stale, from tracedjobs_heartbeat_cutoff).",
)
heartbeat_age_gauge = _meter.create_observable_gauge(
    "tracedjobs.worker.heartbeat.age",
    callbacks=[_observe_heartbeat_age],
    unit="s",
    description="Seconds since each registered worker's last heartbeat.",
)
queue_jobs_gauge = _meter.create_observable_gauge(
    "tracedjobs.queue.jobs",
    callbacks=[_observe_queue_jobs],
    unit="{job}",
    description="Jobs in the database by queue and status.",
)
oldest_age_gauge = _meter.create_observable_gauge(
    "tracedjobs.queue.oldest_age",
    callbacks=[_observe_oldest_age],
    unit="s",
    description="Age of the oldest ready todo job of each queue (0 when none is ready).",
)
