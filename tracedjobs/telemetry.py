"""Everything that knows OpenTelemetry names: spans, instruments and their attributes.

The library uses only the OpenTelemetry API: with no SDK configured every call here is a
cheap no-op. The rest of tracedjobs calls the hooks below and never imports opentelemetry.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from tracedjobs.jobs import Job
    from tracedjobs.otel_lite import DirectSpans, HistogramTable

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

_meter = metrics.get_meter(INSTRUMENTATION_NAME)


def _tracer() -> trace.Tracer | None:
    """The SDK's tracer, or None while no SDK is installed (then spans are skipped
    altogether: the API's no-op path still costs microseconds per call)."""
    global _provider, _provider_tracer
    # Without an SDK the API looks its provider up in os.environ on every call (a tenth of
    # a busy worker's time): its module global says first whether one was installed.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _PROVIDER_FROM_ENV:
        return None
    provider = trace.get_tracer_provider()
    if provider is not _provider:
        _provider = provider
        no_sdk = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        _provider_tracer = None if no_sdk else provider.get_tracer(INSTRUMENTATION_NAME)
    return _provider_tracer


_provider: trace.TracerProvider | None = None
_provider_tracer: trace.Tracer | None = None
_UNKNOWN = object()  # the API no longer has that global: always ask it
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


class _Tally:
    """Counts kept in this process and reported by an observable counter at collection.

    One dict update per event instead of a trip through the SDK's measurement pipeline
    (the §7 counters are still monotonic sums, with the same names and attributes). Safe
    from any thread: a defer may come from many."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = keys
        self._counts: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()

    def add(self, values: tuple[Any, ...], n: int = 1) -> None:
        with self._lock:
            self._counts[values] = self._counts.get(values, 0) + n

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._counts.items())
        return [
            Observation(n, {k: v for k, v in zip(self._keys, values, strict=True) if v is not None})
            for values, n in items
        ]


_sent = _Tally((MESSAGING_SYSTEM, DESTINATION, TASK))
_consumed = _Tally((MESSAGING_SYSTEM, DESTINATION, TASK, OUTCOME, ERROR_TYPE))
sent_messages = _meter.create_observable_counter(
    "messaging.client.sent.messages",
    callbacks=[_sent.observe],
    unit="{message}",
    description="Jobs deferred.",
)
consumed_messages = _meter.create_observable_counter(
    "messaging.client.consumed.messages",
    callbacks=[_consumed.observe],
    unit="{message}",
    description="Attempts finished, by outcome.",
)
# The two histograms, as SDK instruments here and as tables on the worker's direct path.
_HISTOGRAMS = {
    "duration": ("messaging.process.duration", "Duration of one attempt of a job."),
    "queue_wait": (
        "tracedjobs.job.queue_wait",
        "Time from when a job became runnable (scheduled_at, else deferral) to its start.",
    ),
}
process_duration = _meter.create_histogram(
    _HISTOGRAMS["duration"][0],
    unit="s",
    description=_HISTOGRAMS["duration"][1],
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)
queue_wait = _meter.create_histogram(
    _HISTOGRAMS["queue_wait"][0],
    unit="s",
    description=_HISTOGRAMS["queue_wait"][1],
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)


def _metric_attributes(queue: str, task_name: str) -> dict[str, Any]:
    return {MESSAGING_SYSTEM: SYSTEM, DESTINATION: queue, TASK: task_name}


def _traceparent(span_context: trace.SpanContext) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


# -- producer side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceCarrier:
    traceparent: str | None = None
    tracestate: str | None = None


_NO_CARRIER = TraceCarrier()


class SendSpan:
    """The PRODUCER span ``send {queue}`` of one defer (or one batch), current while open.

    Every job of a batch stores this span's context: one span per batch, as the messaging
    conventions allow, instead of a ``create`` span per job (which cost more than the
    insert itself).
    """

    __slots__ = ("_current", "_token", "carrier", "span")

    def __init__(self, queue: str, task_name: str, count: int) -> None:
        self.carrier = _NO_CARRIER
        self.span: trace.Span | None = None
        tracer = _tracer()
        if tracer is None:
            return
        self._current: otel_context.Context | None = None
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "send",
            DESTINATION: queue,
            TASK: task_name,
        }
        if count > 1:
            attributes[BATCH_COUNT] = count
        direct = _direct_spans()
        if direct is not None:
            current = self._current = otel_context.get_current()
            parent = trace.get_current_span(current).get_span_context()
            self.span = direct.start(
                f"send {queue}",
                context=current,
                parent=parent if parent.is_valid else None,
                kind=SpanKind.PRODUCER,
                attributes=attributes,
                links=(),
            )
        else:
            self.span = tracer.start_span(
                f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
            )
        span_context = self.span.get_span_context()
        if span_context.is_valid:
            state = span_context.trace_state.to_header() if span_context.trace_state else None
            self.carrier = TraceCarrier(_traceparent(span_context), state or None)

    def __enter__(self) -> SendSpan:
        if self.span is not None:
            # The context current at __init__ (the direct path looked it up already).
            current = self._current
            self._token = otel_context.attach(trace.set_span_in_context(self.span, current))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.span is None:
            return
        otel_context.detach(self._token)
        if exc is not None and self.span.is_recording():
            self.span.set_attribute(ERROR_TYPE, error_type_of(exc))
            self.span.set_status(Status(StatusCode.ERROR, _safe_str(exc)[:200]))
        self.span.end()

    def set_job_ids(self, job_ids: Sequence[int]) -> None:
        """Put the message id on a single job's send span once the database gave it."""
        if self.span is not None and len(job_ids) == 1 and self.span.is_recording():
            self.span.set_attribute(MESSAGE_ID, str(job_ids[0]))


def send_span(queue: str, task_name: str, count: int) -> SendSpan:
    return SendSpan(queue, task_name, count)


def record_sent(queue: str, task_name: str, count: int) -> None:
    """Count deferred jobs, when the INSERT that creates them succeeds.

    Inside the caller's own transaction (``connection=``) that is before its commit:
    tracedjobs cannot see a psycopg commit without a thread or a query of its own, and
    telemetry has neither. The messaging conventions count *attempts* to send, so a defer
    whose transaction rolls back is counted too (and is never consumed).
    """
    _sent.add((SYSTEM, queue, task_name), count)


# -- consumer side -----------------------------------------------------------------------


_warned_bad_context = False


def _producer_context(job: Job) -> trace.SpanContext | None:
    """The stored W3C context of the job's producer span (parsed here: the propagator's
    general path costs several times more), or None if missing or malformed."""
    global _warned_bad_context
    if not job.traceparent:
        return None
    try:
        version, trace_id, span_id, flags = job.traceparent.split("-")
        if version != "00" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
            raise ValueError(job.traceparent)
        span_context = trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(flags, 16)),
            trace_state=trace.TraceState.from_header([job.tracestate]) if job.tracestate else None,
        )
        if not span_context.is_valid:
            raise ValueError(job.traceparent)
    except ValueError:
        if not _warned_bad_context:
            _warned_bad_context = True
            logger.warning(
                "job %s has an invalid stored trace context %r; running it without a link",
                job.id,
                job.traceparent,
            )
        return None
    return span_context


class AttemptSpan:
    """The consumer span of one attempt: current while its ``with`` block runs (so that
    spans the task opens are its children and histogram exemplars point at it), ended
    when the block ends."""

    __slots__ = ("_token", "context", "span", "span_id", "trace_id")

    def __init__(self, span: trace.Span | None) -> None:
        self.span = span
        ctx = self.context = span.get_span_context() if span is not None else None
        valid = ctx is not None and ctx.is_valid
        self.trace_id = format(ctx.trace_id, "032x") if valid and ctx else None
        self.span_id = format(ctx.span_id, "016x") if valid and ctx else None

    def __enter__(self) -> AttemptSpan:
        if self.span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.span is not None:
            otel_context.detach(self._token)
            self.span.end()

    def finish_discarded(self) -> None:
        """The attempt's result arrived after a rescue recorded it lost: say so on the span."""
        if self.span is not None and self.span.is_recording():
            self.span.set_attribute(OUTCOME, "lost")
            self.span.set_attribute("tracedjobs.job.late_result_discarded", True)

    def finish(
        self, outcome: str, exception: BaseException | None = None, error_type: str | None = None
    ) -> None:
        span = self.span
        if span is None or not span.is_recording():
            return
        span.set_attribute(OUTCOME, outcome)
        if exception is not None:
            try:
                span.record_exception(exception)
            except Exception:  # its __str__ raised: record what can be said safely
                span.add_event(
                    "exception",
                    {"exception.type": error_type_of(exception), "exception.message": ""},
                )
        if error_type is not None:
            span.set_attribute(ERROR_TYPE, error_type)
            description = f"{error_type}: {_safe_str(exception)}"[:200]
            span.set_status(Status(StatusCode.ERROR, description))


def process_span(
    job: Job, *, worker_name: str, trace_parent: str = "link", record_args: bool = False
) -> AttemptSpan:
    """CONSUMER span ``process {queue}`` around one attempt (use it with ``with``).

    By default it carries a Link to the producer context; ``trace_parent="parent"`` makes
    it a child of the producer span instead, so the whole story is one trace. Task
    arguments are recorded (as ``tracedjobs.job.args``, JSON) only with ``record_args``.
    """
    tracer = _tracer()
    if tracer is None:
        return AttemptSpan(None)
    producer = _producer_context(job)
    parent_context = _ROOT  # a new root, unless made a child below
    links: list[Link] = []
    if producer is not None:
        if trace_parent == "parent":
            parent_context = trace.set_span_in_context(trace.NonRecordingSpan(producer))
        elif producer.trace_flags.sampled:
            # An unsampled producer span was never exported: a link would point nowhere.
            links.append(Link(producer))
    name, base = _process_constants(job.queue_name, job.task_name, worker_name)
    attributes = base.copy()
    attributes[MESSAGE_ID] = str(job.id)
    attributes[ATTEMPT] = job.attempt_number
    if record_args:
        attributes[ARGS] = json.dumps(job.args, sort_keys=True, default=str)
    direct = _direct_spans()
    if direct is not None:
        return AttemptSpan(
            direct.start(
                name,
                context=parent_context,
                parent=producer if parent_context is not _ROOT else None,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=links,
            )
        )
    return AttemptSpan(
        tracer.start_span(
            name,
            context=parent_context,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
    )


_ROOT = otel_context.Context()


@functools.lru_cache(maxsize=1024)
def _process_constants(queue: str, task_name: str, worker_name: str) -> tuple[str, dict[str, Any]]:
    """The name and the attributes every attempt of a task in a queue shares (built once:
    the span's own attributes are copied from them)."""
    return f"process {queue}", {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: queue,
        # Workers of a queue compete for its jobs: the queue is the consumer group.
        CONSUMER_GROUP: queue,
        WORKER_NAME: worker_name,
        TASK: task_name,
    }


# The worker's fast path (see otel_lite), installed by otel_sdk.configure when it set the SDK
# up itself: attempt spans made without the SDK's Span, and the two histograms aggregated
# in place. None otherwise: everything goes through the SDK.
_direct: DirectSpans | None = None
_tables: tuple[HistogramTable, HistogramTable] | None = None


def use_direct_spans(direct: DirectSpans | None) -> None:
    global _direct
    _direct = direct


def _direct_spans() -> DirectSpans | None:
    """The direct path, while its provider is still the one installed (call after
    :func:`_tracer`); None: go through the SDK."""
    direct = _direct
    return direct if direct is not None and direct.provider is _provider else None


def histogram_tables() -> tuple[HistogramTable, HistogramTable]:
    """The §7 histograms (``messaging.process.duration``, ``tracedjobs.job.queue_wait``)
    as tables for :func:`use_histogram_tables`."""
    from tracedjobs.otel_lite import HistogramTable

    def table(which: str, keys: tuple[str, ...]) -> HistogramTable:
        name, description = _HISTOGRAMS[which]
        return HistogramTable(
            name, unit="s", description=description, boundaries=DURATION_BUCKETS, keys=keys
        )

    keys = (MESSAGING_SYSTEM, DESTINATION, TASK)
    return table("duration", (*keys, OUTCOME)), table("queue_wait", keys)


def use_histogram_tables(tables: tuple[HistogramTable, HistogramTable] | None) -> None:
    """Record the histograms into ``tables`` (read by the readers otel_sdk made) instead of
    the SDK instruments; None goes back to the instruments."""
    global _tables
    _tables = tables


def _span_context(span: AttemptSpan | None) -> trace.SpanContext | None:
    if span is not None:
        return span.context
    return trace.get_current_span().get_span_context()


def record_attempt(
    *,
    queue: str,
    task_name: str,
    outcome: str,
    duration: float | None,
    error_type: str | None = None,
    span: AttemptSpan | None = None,
) -> None:
    """Count a finished attempt and record its duration (None for a lost attempt).

    ``span`` (the attempt's) is where an exemplar points; by default the current span."""
    _consumed.add((SYSTEM, queue, task_name, outcome, error_type or None))
    tables = _tables
    if duration is not None and tables is not None:
        tables[0].record((SYSTEM, queue, task_name, outcome), duration, _span_context(span))
    elif duration is not None:
        attributes = _metric_attributes(queue, task_name)
        attributes[OUTCOME] = outcome
        process_duration.record(duration, attributes)


def record_queue_wait(
    queue: str, task_name: str, seconds: float, span: AttemptSpan | None = None
) -> None:
    tables = _tables
    if tables is not None:
        tables[1].record((SYSTEM, queue, task_name), max(seconds, 0.0), _span_context(span))
    else:
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
