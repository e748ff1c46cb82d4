"""The worker's per-attempt telemetry without the SDK's per-call machinery.

Profiled on a busy worker, the stock SDK costs ~40 µs to start and end one span (attribute
validation into bounded containers, locks, processor fan-out) and ~15 µs per histogram
record (attribute-set hashing, view matching, exemplar reservoirs, once per reader); together
they were most of the worker's own CPU per job. When tracedjobs set the SDK up itself
(``otel_sdk.configure``: the ``tracedjobs worker`` command), it knows every span processor and
metric reader there is, so the hot path can be cut down to what they need:

- :class:`DirectSpans` makes :class:`LiteSpan` s: real recording spans of the OpenTelemetry
  API (tasks can add attributes and events, open child spans, read their ids), sampled by the
  provider's own sampler and ids from its id generator, whose plain data goes straight to the
  export child at ``end()``; the child rebuilds SDK spans and runs the stock batch processor
  and OTLP exporter there, on the other core.
- :class:`HistogramTable` aggregates an explicit-bucket histogram in a dict keyed by a tuple
  of attribute values; :func:`with_tables` makes metric readers that add those histograms to
  every collection, in the reader's temporality, with exemplars per the
  ``OTEL_METRICS_EXEMPLAR_FILTER`` rules.

Anything else (a provider an application configured itself) goes through the SDK as usual.
This module knows no tracedjobs names: ``telemetry`` says what to record.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    DEFAULT_ON,
    ParentBased,
    StaticSampler,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

logger = logging.getLogger(__name__)

# As the SDK sets them: with the W3C level-2 "random trace id" flag where the SDK has it.
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_FLAGS = {
    (sampled, random_id): TraceFlags(sampled * TraceFlags.SAMPLED | random_id * _RANDOM)
    for sampled in (False, True)
    for random_id in (False, True)
}
_NOT_SAMPLED = _FLAGS[False, False]
_UNSET = Status(StatusCode.UNSET)
_SCALARS = (str, bool, int, float)
_warned_attribute = False


def _valid(value: object) -> bool:
    """What the API allows as an attribute value: a scalar, or a sequence of one scalar type."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, list | tuple):
        kinds = {type(v) for v in value}
        return len(kinds) <= 1 and all(issubclass(k, _SCALARS) for k in kinds)
    return False


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    global _warned_attribute
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if isinstance(key, str) and key and _valid(value):
            out[key] = tuple(value) if isinstance(value, list) else value
        elif not _warned_attribute:
            _warned_attribute = True
            logger.warning("dropped span attribute %r: not a valid OpenTelemetry value", key)
    return out


class LiteSpan(trace.Span):
    """A recording span whose data is handed to ``sink`` when it ends (see module doc).

    Values set by tracedjobs are trusted; values set through the API (a task annotating its
    attempt span) are checked as the SDK checks them.
    """

    __slots__ = (
        "_attributes", "_context", "_end", "_events", "_kind", "_links", "_name",
        "_parent", "_sink", "_start", "_status",
    )  # fmt: skip

    def __init__(
        self,
        sink: Callable[[LiteSpan], None],
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
    ) -> None:
        self._sink = sink
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._links = list(links)
        self._events: list[tuple[str, int, dict[str, Any]]] = []
        self._status = _UNSET
        self._start = time.time_ns()
        self._end: int | None = None

    # -- the API ---------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is not None:
            return
        if type(key) is str and key and type(value) in _SCALARS:
            self._attributes[key] = value
        else:
            self._attributes.update(_clean({key: value}))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end is None:
            self._attributes.update(_clean(attributes))

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            self._events.append((name, timestamp or time.time_ns(), _clean(attributes)))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(Link(context, _clean(attributes)))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: a final OK is never overwritten, and UNSET changes nothing.
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        cls = type(exception)
        qualname = cls.__qualname__
        module = cls.__module__
        event = {
            "exception.type": qualname if module in ("builtins", "") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        self._sink(self)

    # -- for the sink ----------------------------------------------------------------------

    def record(self) -> tuple[Any, ...]:
        """name, context, parent, kind, start, end, attributes, events, links, status."""
        return (
            self._name, self._context, self._parent, self._kind, self._start, self._end,
            self._attributes, self._events, self._links, self._status,
        )  # fmt: skip


class DirectSpans:
    """Starts :class:`LiteSpan` s for ``provider`` (whose only span processor tracedjobs
    installed), handing each ended span to ``sink``."""

    def __init__(self, provider: TracerProvider, sink: Callable[[LiteSpan], None]) -> None:
        self.provider = provider
        self._sink = sink
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        # The SDK's own samplers and id generator are applied here without their calls
        # (a defer's whole span costs less than their machinery); any other goes through.
        self._rule = _STOCK_SAMPLERS.get(self._sampler.get_description())
        if type(self._sampler) not in (ParentBased, StaticSampler):
            self._rule = None
        self._random_ids = type(self._ids) is RandomIdGenerator
        self._random_trace_ids = self._ids.is_trace_id_random()

    def start(
        self,
        name: str,
        *,
        context: Context,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
    ) -> trace.Span:
        """As ``Tracer.start_span``: ``parent`` is the span context in ``context`` (or None
        for a new trace), passed so that it is not looked up again."""
        if parent is None:
            trace_id = _trace_id() if self._random_ids else self._ids.generate_trace_id()
            random_id = self._random_trace_ids
        else:
            trace_id, random_id = parent.trace_id, bool(parent.trace_flags & _RANDOM)
        rule = self._rule
        if rule is not None:
            # ALWAYS_ON, or ParentBased(ALWAYS_ON) (the SDK's default): the parent's decision
            # if there is a parent, else sampled; the parent's trace state; no attributes.
            sampled = recording = parent is None or rule == "on" or parent.trace_flags.sampled
            state = parent.trace_state if parent is not None else None
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled, recording = result.decision.is_sampled(), result.decision.is_recording()
            state = result.trace_state
            if recording and result.attributes:
                attributes.update(result.attributes)
        span_id = _span_id() if self._random_ids else self._ids.generate_span_id()
        span_context = SpanContext(trace_id, span_id, False, _FLAGS[sampled, random_id], state)
        if not recording:
            return trace.NonRecordingSpan(span_context)
        return LiteSpan(self._sink, name, span_context, parent, kind, attributes, links)


# Samplers whose decision DirectSpans makes itself, by their (public) description.
_STOCK_SAMPLERS = {
    ALWAYS_ON.get_description(): "on",
    DEFAULT_ON.get_description(): "parent",
}


def _trace_id() -> int:
    """RandomIdGenerator.generate_trace_id, without its call."""
    while not (trace_id := random.getrandbits(128)):
        pass
    return trace_id


def _span_id() -> int:
    while not (span_id := random.getrandbits(64)):
        pass
    return span_id


# -- histograms ------------------------------------------------------------------------------


def exemplar_filter() -> str:
    """``OTEL_METRICS_EXEMPLAR_FILTER`` as the SDK reads it: trace_based (default),
    always_on or always_off."""
    value = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based").strip().lower()
    return value if value in ("always_on", "always_off") else "trace_based"


class _Point:
    __slots__ = ("count", "counts", "exemplars", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.exemplars: list[tuple[float, int, int, int] | None] = [None] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")


class HistogramTable:
    """One explicit-bucket histogram: a point per tuple of attribute values (``keys`` names
    them; a None value leaves its attribute out). Safe from any thread."""

    def __init__(
        self,
        name: str,
        *,
        unit: str,
        description: str,
        boundaries: Sequence[float],
        keys: Sequence[str],
    ) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._bounds = tuple(float(b) for b in boundaries)
        self._keys = tuple(keys)
        self._lock = threading.Lock()
        self._started = time.time_ns()
        self._cumulative: dict[tuple[Any, ...], _Point] = {}
        # Delta readers' points since their last collection, by reader.
        self._deltas: dict[int, tuple[int, dict[tuple[Any, ...], _Point]]] = {}
        self._filter = exemplar_filter()

    def record(self, values: tuple[Any, ...], value: float, span: SpanContext | None) -> None:
        """Record ``value``; ``span`` is the current span's context, for the exemplar."""
        index = bisect.bisect_left(self._bounds, value)
        exemplar = None
        if (
            self._filter != "always_off"
            and span is not None
            and (self._filter == "always_on" or span.trace_flags.sampled)
        ):
            exemplar = (value, time.time_ns(), span.span_id, span.trace_id)
        with self._lock:
            self._add(self._cumulative, values, index, value, exemplar)
            for _, points in self._deltas.values():
                self._add(points, values, index, value, exemplar)

    def _add(
        self,
        points: dict[tuple[Any, ...], _Point],
        values: tuple[Any, ...],
        index: int,
        value: float,
        exemplar: tuple[float, int, int, int] | None,
    ) -> None:
        point = points.get(values)
        if point is None:
            point = points[values] = _Point(len(self._bounds) + 1)
        point.counts[index] += 1
        point.count += 1
        point.sum += value
        if value < point.min:
            point.min = value
        if value > point.max:
            point.max = value
        if exemplar is not None:
            point.exemplars[index] = exemplar

    def collect(self, reader: object, temporality: AggregationTemporality) -> Metric | None:
        now = time.time_ns()
        with self._lock:
            if temporality is AggregationTemporality.DELTA:
                start, points = self._deltas.get(id(reader), (self._started, self._cumulative))
                self._deltas[id(reader)] = (now, {})
            else:
                start, points = self._started, self._cumulative
            snapshot = [
                (values, p.count, p.sum, p.min, p.max, list(p.counts), list(p.exemplars))
                for values, p in points.items()
            ]
        if not snapshot:
            return None
        data_points = [
            HistogramDataPoint(
                attributes=self._attributes(values),
                start_time_unix_nano=start,
                time_unix_nano=now,
                count=count,
                sum=total,
                bucket_counts=counts,
                explicit_bounds=self._bounds,
                min=low,
                max=high,
                exemplars=[
                    Exemplar(None, e[0], e[1], e[2], e[3]) for e in exemplars if e is not None
                ],
            )
            for values, count, total, low, high, counts, exemplars in snapshot
        ]
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=data_points, aggregation_temporality=temporality),
        )

    def _attributes(self, values: tuple[Any, ...]) -> dict[str, Any]:
        return {k: v for k, v in zip(self._keys, values, strict=True) if v is not None}


class _TableSource:
    """Adds the tables' metrics to what a reader collects from its MeterProvider."""

    def __init__(
        self, tables: Sequence[HistogramTable], scope: InstrumentationScope, resource: Resource
    ) -> None:
        self.tables, self.scope, self.resource = tables, scope, resource

    def add_to(
        self, data: MetricsData | None, reader: MetricReader, temporality: AggregationTemporality
    ) -> MetricsData | None:
        extra = [m for t in self.tables if (m := t.collect(reader, temporality)) is not None]
        if not extra:
            return data
        if data is None or not data.resource_metrics:
            scope_metrics = ScopeMetrics(self.scope, extra, self.scope.schema_url or "")
            resource = ResourceMetrics(self.resource, [scope_metrics], self.resource.schema_url)
            return MetricsData([resource])
        names = {m.name for m in extra}
        resource_metrics = data.resource_metrics[0]
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name == self.scope.name:
                # An SDK instrument of the same name (unused on this path) is replaced.
                kept = [m for m in scope_metrics.metrics if m.name not in names]
                scope_metrics.metrics[:] = kept + extra  # type: ignore[index]
                return data
        resource_metrics.scope_metrics.append(  # type: ignore[attr-defined]
            ScopeMetrics(self.scope, extra, self.scope.schema_url or "")
        )
        return data


def with_tables(readers: Sequence[MetricReader], source: _TableSource) -> bool:
    """Make ``readers`` (registered with their MeterProvider) add ``source``'s histograms to
    every collection, each in its temporality for histograms. False (and nothing changed)
    if this SDK version does not collect as expected: the SDK instruments are used then."""
    hooks = []
    for reader in readers:
        collect = getattr(reader, "_collect", None)
        temporalities = getattr(reader, "_instrument_class_temporality", {})
        histogram = [t for cls, t in temporalities.items() if issubclass(cls, SdkHistogram)]
        if not callable(collect) or len(histogram) != 1:
            logger.warning("this OpenTelemetry SDK collects metrics differently than expected; "
                           "histograms are recorded through it")  # fmt: skip
            return False
        hooks.append((reader, collect, histogram[0]))
    for reader, collect, temporality in hooks:
        reader._collect = _collect_with(source, collect, temporality)  # type: ignore[assignment]
    return True


def _collect_with(
    source: _TableSource,
    collect: Callable[..., MetricsData | None],
    temporality: AggregationTemporality,
) -> Callable[..., MetricsData | None]:
    def collect_with_tables(reader: MetricReader, timeout_millis: float = 10_000) -> Any:
        return source.add_to(collect(reader, timeout_millis=timeout_millis), reader, temporality)

    return collect_with_tables


def table_source(
    tables: Iterable[HistogramTable], scope: InstrumentationScope, resource: Resource
) -> _TableSource:
    return _TableSource(list(tables), scope, resource)
