"""The export child's own OTLP encoding gives the stock encoder's request, byte for byte.

Spans go through the real path between the processes (record → marshal) and are then
encoded twice: by ``otel_encode.SpanEncoder`` from the records, and by the stock
``encode_spans`` from the original SDK spans (or, for spans made without the SDK, from the
SDK spans the child would otherwise rebuild). The request bodies must be equal.
"""

from __future__ import annotations

import marshal
import sys
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tests.unit.test_otel_export import RESOURCE, finished_spans
from tests.unit.test_otel_lite import limited_direct_span_records
from tracedjobs import otel_encode, otel_export

OTHER_RESOURCE = Resource({"service.name": "web", "deployment.environment": "test"})
SCOPE = InstrumentationScope("tracedjobs", "0.1.0", None, {"scope.attr": 1})


def handmade_spans() -> list[ReadableSpan]:
    """What the SDK's test helpers don't make: remote parents, trace state on the span's own
    context, every kind and status, no attributes, two resources and scopes interleaved."""
    remote = SpanContext(0xA1, 0xB1, is_remote=True, trace_flags=TraceFlags(1))
    local = SpanContext(0xA1, 0xB2, is_remote=False, trace_flags=TraceFlags(1))
    state = TraceState([("vendor", "v1"), ("other", "x")])
    spans = []
    statuses = [Status(StatusCode.UNSET), Status(StatusCode.OK), Status(StatusCode.ERROR),
                Status(StatusCode.ERROR, "KeyError: 'x'"), Status(StatusCode.UNSET)]  # fmt: skip
    for i, kind in enumerate(SpanKind):
        attributes = {
            "messaging.system": "tracedjobs", "n": i, "flag": bool(i % 2), "ratio": i / 3,
            "zero": [-0.0, 0.0][i % 2], "tags": ("a", "b"), "ints": (1, 2), "empty": "",
            "v": [1, True, 1.0, "1", 0][i],
        }  # fmt: skip
        context = SpanContext(0xA1 + i, 0xC0 + i, False, TraceFlags(1), state if i % 2 else None)
        spans.append(
            ReadableSpan(
                name=f"span {i}",
                context=context,
                parent=[None, remote, local, remote, None][i],
                resource=[RESOURCE, OTHER_RESOURCE][i % 2],
                attributes={} if i == 4 else attributes,
                events=[Event("retry", {"attempt": i}, 1_700_000_000_000_000_000 + i)],
                links=[Link(remote, {"link.kind": "producer"}), Link(local)],
                kind=kind,
                status=statuses[i],
                start_time=1_700_000_000_000_000_000 + i,
                end_time=1_700_000_000_000_500_000 + i,
                instrumentation_scope=[SCOPE, None, InstrumentationScope("user.code")][i % 3],
            )
        )
    return spans


def records_of(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """As ChildSpanProcessor ships them: each resource and scope defined before its spans."""
    records: list[tuple[Any, ...]] = []
    keys: dict[Any, int] = {}

    def key(obj: Any, define: Any) -> int:
        if id(obj) not in keys:
            keys[id(obj)] = len(keys) + 1
            records.append(define(keys[id(obj)]))
        return keys[id(obj)]

    for span in spans:
        r = key(span.resource, lambda k, s=span: otel_export.resource_record(k, s.resource))
        s = key(
            span.instrumentation_scope,
            lambda k, s=span: otel_export.scope_record(k, s.instrumentation_scope),
        )
        records.append(otel_export.span_record(span, r, s))
    return list(marshal.loads(marshal.dumps(records)))


def encoder_for(
    records: list[tuple[Any, ...]],
) -> tuple[otel_encode.SpanEncoder, list[otel_encode.Shipped]]:
    """An encoder that has the records' resources and scopes, and the batch of their spans."""
    encoder = otel_encode.SpanEncoder()
    batch = []
    for record in records:
        if record[0] == "S":
            shipped = encoder.shipped(record)
            assert shipped is not None
            batch.append(shipped)
        else:
            encoder.define(record)
    return encoder, batch


def encode_records(records: list[tuple[Any, ...]]) -> bytes:
    encoder, batch = encoder_for(records)
    return encoder.request(batch).SerializeToString()


@pytest.mark.parametrize("make", [finished_spans, handmade_spans])
def test_records_encode_to_the_stock_request_byte_for_byte(make: Any):
    spans = make()
    stock = encode_spans(spans).SerializeToString()
    records = records_of(spans)
    assert encode_records(records) == stock
    # The attribute cache changes nothing the second time round.
    encoder, batch = encoder_for(records)
    first = encoder.request(batch).SerializeToString()
    assert encoder.request(batch).SerializeToString() == first == stock
    # And it is a real request, not two empty ones.
    assert len(stock) > 300 * len(spans) // 2


def test_direct_spans_get_the_span_limits_as_the_rebuilt_ones(monkeypatch: pytest.MonkeyPatch):
    records = limited_direct_span_records(monkeypatch)
    rebuild = otel_export._Rebuilder()
    for r in records[:-1]:
        rebuild.define(r)
    stock = encode_spans([rebuild.span(records[-1])])
    assert encode_records(records) == stock.SerializeToString()
    (otlp,) = stock.resource_spans[0].scope_spans[0].spans
    assert [(a.key, a.value.string_value) for a in otlp.attributes] == [("b", "y"), ("c", "z" * 8)]
    assert otlp.dropped_attributes_count == 1


def test_unsampled_records_are_not_exported():
    record = otel_export.span_record(handmade_spans()[0], 1, 1)
    unsampled = (*record[:2], (*record[2][:2], 0, *record[2][3:]), *record[3:])
    assert otel_encode.SpanEncoder().shipped(unsampled) is None


@pytest.mark.parametrize("exporter_class", [HttpSpanExporter, GrpcSpanExporter])
def test_install_sends_records_to_their_encoder_and_spans_to_the_stock_one(
    monkeypatch: pytest.MonkeyPatch, exporter_class: Any
):
    module = sys.modules[exporter_class.__module__]
    monkeypatch.setattr(module, "encode_spans", module.encode_spans)  # restored afterwards
    exporter = exporter_class()
    assert otel_encode.install(exporter)
    assert otel_encode.install(exporter)  # a second time changes nothing
    spans = handmade_spans()
    assert module.encode_spans(spans) == encode_spans(spans)
    records = records_of(spans)
    _, batch = encoder_for(records)
    assert module.encode_spans(batch).SerializeToString() == encode_records(records)
    exporter.shutdown()


def test_install_leaves_an_exporter_that_does_not_call_the_public_encoder_alone(
    monkeypatch: pytest.MonkeyPatch,
):
    module = sys.modules[HttpSpanExporter.__module__]
    monkeypatch.setattr(module, "encode_spans", lambda spans: None)  # another SDK version
    assert not otel_encode.install(HttpSpanExporter())
