"""What the export child rebuilds encodes to the same OTLP bytes as the original.

Spans and metric data go through the real path between the processes (record → marshal →
rebuild) and then through the stock OTLP encoder: the request bodies must be byte-equal to
what the in-process exporter would have sent for the originals.
"""

from __future__ import annotations

import marshal
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tracedjobs import otel_export

RESOURCE = Resource({"service.name": "svc", "service.instance.id": "i-1"}, "https://schema/1")


def finished_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=RESOURCE,
        shutdown_on_exit=False,
        span_limits=SpanLimits(max_span_attributes=12, max_events=3),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tracedjobs", "1.2.3", schema_url="https://schema/2")
    other = provider.get_tracer("user.code")
    producer = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
        trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1")]),
    )  # fmt: skip
    attributes = {
        "messaging.system": "tracedjobs", "messaging.message.id": "42",
        "tracedjobs.job.attempt": 2, "ratio": 0.5, "flag": True,
        "list": ("a", "b"), "ints": (1, 2, 3),
    }  # fmt: skip
    with tracer.start_as_current_span(
        "process default", kind=SpanKind.CONSUMER, attributes=attributes,
        links=[Link(producer, {"link.kind": "producer"})],
    ) as span:  # fmt: skip
        with other.start_as_current_span("inner work"):
            pass
        span.add_event("oldest")  # the limit is 3 events: this one is dropped
        span.add_event("note", {"n": 1})
        span.add_event("e0")
        try:
            raise ValueError("broken on purpose")
        except ValueError as exc:
            span.record_exception(exc)
        for i in range(8):  # past the attribute limit: dropped_attributes > 0
            span.set_attribute(f"extra.{i}", i)
        span.set_status(Status(StatusCode.ERROR, "ValueError: broken on purpose"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def ship(records: list[tuple[Any, ...]]) -> list[Any]:
    """Through marshal as the shipper does (one frame)."""
    return list(marshal.loads(marshal.dumps(records)))


def test_rebuilt_spans_encode_to_the_same_otlp_request_as_the_originals():
    spans = finished_spans()
    assert len(spans) == 2
    process = next(s for s in spans if s.name == "process default")
    assert process.dropped_attributes > 0 and process.dropped_events == 1  # the test covers them
    records: list[tuple[Any, ...]] = [otel_export.resource_record(1, RESOURCE)]
    scopes: dict[Any, int] = {}
    for span in spans:
        if span.instrumentation_scope not in scopes:
            key = scopes[span.instrumentation_scope] = len(scopes) + 1
            records.append(otel_export.scope_record(key, span.instrumentation_scope))
        records.append(otel_export.span_record(span, 1, scopes[span.instrumentation_scope]))

    rebuild = otel_export._Rebuilder()
    rebuilt = []
    for record in ship(records):
        if record[0] == "S":
            rebuilt.append(rebuild.span(record))
        else:
            rebuild.define(record)

    assert encode_spans(rebuilt).SerializeToString() == encode_spans(spans).SerializeToString()
    # And it is a real request carrying what matters (not two empty ones).
    request = encode_spans(rebuilt)
    (otlp,) = [
        s for ss in request.resource_spans[0].scope_spans for s in ss.spans
        if s.name == "process default"
    ]  # fmt: skip
    assert otlp.links[0].trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert [e.name for e in otlp.events] == ["note", "e0", "exception"]
    exception = {a.key: a.value.string_value for a in otlp.events[2].attributes}
    assert exception["exception.message"] == "broken on purpose"
    assert otlp.status.code == 2 and otlp.dropped_events_count == 1


def test_rebuilt_metrics_encode_to_the_same_otlp_request_as_the_originals():
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("tracedjobs", "1.2.3")
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    consumed = meter.create_counter("messaging.client.consumed.messages", unit="{message}")
    duration = meter.create_histogram(
        "messaging.process.duration", unit="s", explicit_bucket_boundaries_advisory=[0.005, 1, 60]
    )
    gauge = meter.create_gauge("tracedjobs.queue.jobs", unit="{job}")
    # Inside a sampled span: the histogram points carry exemplars with trace and span ids.
    with tracer_provider.get_tracer("t").start_as_current_span("process default"):
        for task, outcome in [("a", "succeeded"), ("a", "failed"), ("b", "succeeded")] * 3:
            attrs = {"tracedjobs.task.name": task, "tracedjobs.job.outcome": outcome}
            consumed.add(1, attrs)
            duration.record(0.042, attrs)
    gauge.set(7, {"tracedjobs.job.status": "todo"})
    data = reader.get_metrics_data()
    assert data is not None

    rebuilt = otel_export.from_plain(ship([("M", otel_export.to_plain(data))])[0][1])

    assert encode_metrics(rebuilt).SerializeToString() == encode_metrics(data).SerializeToString()
    request = encode_metrics(rebuilt)
    names = {m.name for sm in request.resource_metrics[0].scope_metrics for m in sm.metrics}
    assert names == {
        "messaging.client.consumed.messages", "messaging.process.duration", "tracedjobs.queue.jobs"
    }  # fmt: skip
    histogram = next(
        m for sm in request.resource_metrics[0].scope_metrics for m in sm.metrics
        if m.name == "messaging.process.duration"
    )  # fmt: skip
    assert any(p.exemplars for p in histogram.histogram.data_points)
    provider.shutdown()
    tracer_provider.shutdown()
