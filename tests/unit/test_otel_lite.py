"""The worker's direct telemetry path (otel_lite) against the SDK it stands in for.

tests/unit/test_telemetry.py runs every span and metric test on both paths; here: what only
the direct path has to get right by itself (sampling, the span API's rules, histogram
buckets and temporality, exemplar filters, span limits in the export child).
"""

from __future__ import annotations

import logging
import marshal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_ON,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from tracedjobs import otel_export, otel_lite

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0)
SCOPE = InstrumentationScope("tracedjobs")


def start(direct: otel_lite.DirectSpans, parent: SpanContext | None = None) -> Any:
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else Context()
    return direct.start(
        "process q",
        context=context,
        parent=parent,
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "tracedjobs"},
        links=[],
    )


def collecting() -> tuple[otel_lite.DirectSpans, list[Any]]:
    ended: list[Any] = []
    return otel_lite.DirectSpans(TracerProvider(), ended.append), ended


def test_spans_follow_the_providers_sampler_and_its_parent_rules():
    ended: list[Any] = []
    off = otel_lite.DirectSpans(TracerProvider(sampler=ALWAYS_OFF), ended.append)
    span = start(off)
    assert not span.is_recording() and span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert ended == []

    # ParentBased: the attempt of an unsampled producer is not sampled either, and it stays
    # in the producer's trace.
    parent_based = otel_lite.DirectSpans(
        TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0))), ended.append
    )
    producer = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    child = start(parent_based, producer)
    assert child.get_span_context().trace_id == 0xABC
    assert not child.get_span_context().trace_flags.sampled
    sampled = start(parent_based, SpanContext(0xABC, 0xDEF, True, TraceFlags(1)))
    assert sampled.is_recording() and sampled.get_span_context().trace_flags.sampled
    sampled.end()
    assert ended == [sampled]


SAMPLERS = {
    "default": DEFAULT_ON,
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parent_off": ParentBased(ALWAYS_OFF),
    "ratio": TraceIdRatioBased(0.5),
}
PARENTS = {
    "root": None,
    "sampled": SpanContext(0xABC, 0xDEF, True, TraceFlags(1), TraceState([("v", "1")])),
    "unsampled": SpanContext(0xABC, 0xDEF, True, TraceFlags(0), TraceState([("v", "2")])),
    "local": SpanContext(0xABC, 0xDEF, False, TraceFlags(1)),
}


class FixedTraceId(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return 0x0123456789ABCDEF0123456789ABCDEF


@pytest.mark.parametrize("parent", PARENTS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_decisions_are_the_sdks(sampler: str, parent: str):
    """The SDK's default and always-on samplers are applied without their calls: the span
    must come out as the SDK's own tracer makes it, for every kind of parent."""
    # The ratio sampler decides by trace id: both draw the same one.
    ids = FixedTraceId() if sampler == "ratio" else RandomIdGenerator()
    provider = TracerProvider(sampler=SAMPLERS[sampler], id_generator=ids)
    direct = otel_lite.DirectSpans(provider, lambda span: None)
    assert (direct._rule is not None) == (sampler in ("default", "always_on"))
    ctx = PARENTS[parent]
    context = trace.set_span_in_context(trace.NonRecordingSpan(ctx)) if ctx else Context()
    ours = start(direct, ctx).get_span_context()
    sdk_span = provider.get_tracer("t").start_span(
        "process q", context=context, kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "tracedjobs"},
    )  # fmt: skip
    theirs = sdk_span.get_span_context()
    assert ours.trace_flags == theirs.trace_flags
    assert ours.trace_state == theirs.trace_state
    assert ours.is_valid and not ours.is_remote
    if ctx is not None:
        assert ours.trace_id == theirs.trace_id == ctx.trace_id
    assert start(direct, ctx).is_recording() == sdk_span.is_recording()


def test_a_custom_id_generator_is_used():
    class Counting(RandomIdGenerator):
        n = 0

        def generate_span_id(self) -> int:
            self.n += 1
            return self.n

        def generate_trace_id(self) -> int:
            return 0x123

    direct = otel_lite.DirectSpans(TracerProvider(id_generator=Counting()), lambda span: None)
    assert direct._rule is not None  # the default sampler, still applied directly
    first, second = start(direct).get_span_context(), start(direct).get_span_context()
    assert (first.trace_id, first.span_id, second.span_id) == (0x123, 1, 2)


def test_the_span_api_behaves_as_the_sdks(caplog: pytest.LogCaptureFixture):
    direct, ended = collecting()
    span = start(direct)
    span.set_attribute("good", 1)
    span.set_attributes({"list": [1, 2], "mixed": [1, "a"], "object": object()})
    span.add_event("step", {"n": 2})
    span.update_name("process renamed")
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "ignored: OK is final")
    span.record_exception(ValueError("boom"))
    span.end()
    span.end()  # a second end is ignored
    span.set_attribute("late", True)  # after the end: ignored
    assert ended == [span]
    name, _, _, _, start_ns, end_ns, attributes, events, _, status = span.record()
    assert name == "process renamed" and end_ns >= start_ns
    assert attributes == {"messaging.system": "tracedjobs", "good": 1, "list": (1, 2)}
    assert status.status_code is StatusCode.OK
    assert [e[0] for e in events] == ["step", "exception"]
    exception = events[1][2]
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "boom"
    assert "ValueError: boom" in exception["exception.stacktrace"]
    assert "not a valid OpenTelemetry value" in caplog.text


def test_unset_never_replaces_an_error_status():
    direct, _ = collecting()
    span = start(direct)
    span.set_status(StatusCode.ERROR, "bad")
    span.set_status(StatusCode.UNSET)
    assert span.record()[-1].status_code is StatusCode.ERROR


def sdk_histogram_points(values: list[float]) -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(BOUNDS))],
    )
    histogram = provider.get_meter("t").create_histogram("h")
    for v in values:
        histogram.record(v, {"k": "a"})
    data = reader.get_metrics_data()
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]


def table() -> otel_lite.HistogramTable:
    return otel_lite.HistogramTable("h", unit="s", description="d", boundaries=BOUNDS, keys=("k",))


def test_histogram_tables_bucket_count_and_sum_as_the_sdk_does():
    # Boundaries themselves included: a value equal to a bound belongs to the bucket below.
    values = [0.0, 0.005, 0.0051, 0.01, 0.042, 0.05, 0.5, 1.0, 9.99, 10.0, 10.01, 3600.0]
    t = table()
    for v in values:
        t.record(("a",), v, None)
    metric = t.collect(object(), AggregationTemporality.CUMULATIVE)
    assert metric is not None
    (ours,) = metric.data.data_points
    sdk = sdk_histogram_points(values)
    assert list(ours.bucket_counts) == list(sdk.bucket_counts)
    assert (ours.count, ours.min, ours.max) == (sdk.count, sdk.min, sdk.max)
    assert ours.sum == pytest.approx(sdk.sum)
    assert tuple(ours.explicit_bounds) == tuple(sdk.explicit_bounds)
    assert dict(ours.attributes) == {"k": "a"}


def test_readers_get_the_tables_in_their_own_temporality():
    t = table()
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    MeterProvider(metric_readers=[cumulative, delta])  # registers the readers
    assert otel_lite.with_tables(
        [cumulative, delta], otel_lite.table_source([t], SCOPE, Resource({"r": 1}))
    )

    def point(reader: InMemoryMetricReader) -> Any:
        data = reader.get_metrics_data()
        (resource_metrics,) = data.resource_metrics
        assert resource_metrics.resource.attributes == {"r": 1}  # made when the SDK had none
        (metric,) = resource_metrics.scope_metrics[0].metrics
        return metric.data.aggregation_temporality, metric.data.data_points[0]

    t.record(("a",), 0.02, None)
    t.record(("a",), 0.03, None)
    assert point(cumulative)[1].count == 2
    temporality, first = point(delta)
    assert temporality is AggregationTemporality.DELTA and first.count == 2
    t.record(("a",), 5.0, None)
    assert point(cumulative)[1].count == 3
    _, second = point(delta)
    assert (second.count, second.sum, second.min) == (1, 5.0, 5.0)
    assert second.start_time_unix_nano == first.time_unix_nano
    assert point(cumulative)[1].start_time_unix_nano == first.start_time_unix_nano


@pytest.mark.parametrize(
    ("setting", "sampled_ok", "unsampled_ok"),
    [(None, True, False), ("always_on", True, True), ("always_off", False, False)],
)
def test_exemplars_follow_the_filter_setting(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, sampled_ok: bool, unsampled_ok: bool
):
    if setting:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", setting)
    t = table()
    t.record(("a",), 0.001, SpanContext(1, 2, False, TraceFlags(1)))
    t.record(("a",), 0.5, SpanContext(3, 4, False, TraceFlags(0)))
    metric = t.collect(object(), AggregationTemporality.CUMULATIVE)
    assert metric is not None
    traces = {e.trace_id for e in metric.data.data_points[0].exemplars}
    assert (1 in traces, 3 in traces) == (sampled_ok, unsampled_ok)


def limited_direct_span_records(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the export child receives for one direct span past the attribute limits (count
    2, length 8): its resource and scope, then the span (last)."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    records: list[Any] = []

    class Child:
        def submit(self, record: Any) -> None:
            records.append(marshal.loads(marshal.dumps(record)))

        def key_of(self, obj: Any, define: Any) -> int:
            self.submit(define(1))
            return 1

    processor = otel_export.ChildSpanProcessor(Child())  # type: ignore[arg-type]
    resource = Resource({"service.name": "w"})
    direct = otel_lite.DirectSpans(TracerProvider(), processor.lite_sink(resource, SCOPE))
    span = direct.start(
        "process q",
        context=Context(),
        parent=None,
        kind=SpanKind.CONSUMER,
        attributes={"a": "x", "b": "y", "c": "z" * 20},
        links=[Link(SpanContext(5, 6, True, TraceFlags(1)), {"l": 1})],
    )
    span.end()
    return records


def test_the_export_child_applies_span_limits_to_direct_spans(monkeypatch: pytest.MonkeyPatch):
    records = limited_direct_span_records(monkeypatch)
    rebuild = otel_export._Rebuilder()
    for r in records[:-1]:
        rebuild.define(r)
    shipped = rebuild.span(records[-1])
    # As the SDK: the oldest attribute goes when full, long strings are cut.
    assert dict(shipped.attributes) == {"b": "y", "c": "z" * 8}
    assert shipped.dropped_attributes == 1
    assert shipped.resource.attributes["service.name"] == "w"
    assert shipped.instrumentation_scope.name == "tracedjobs"
    assert [(li.context.trace_id, dict(li.attributes)) for li in shipped.links] == [(5, {"l": 1})]


def test_invalid_attribute_warning_is_logged_once(caplog: pytest.LogCaptureFixture):
    otel_lite._warned_attribute = False
    direct, _ = collecting()
    with caplog.at_level(logging.WARNING, logger="tracedjobs.otel_lite"):
        for _ in range(3):
            start(direct).set_attribute("bad", {"a": 1})
    assert caplog.text.count("not a valid OpenTelemetry value") == 1
