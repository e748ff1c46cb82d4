"""OTLP encoding of the span records the export child receives, without rebuilding SDK spans.

The stock exporter encodes ``ReadableSpan`` objects one attribute at a time (a ``KeyValue``
and an ``AnyValue`` message built from Python for each), then copies every span into its
``ScopeSpans``: about 46 µs of the export child's CPU per tracedjobs span on this machine
kind, on the core the worker and PostgreSQL share with it. Here the records ``otel_export``
ships are encoded straight into the official protobuf classes (``opentelemetry-proto``),
built in place in one request, and the attribute pairs that repeat from span to span (the
messaging system, queue, task and worker names…) are serialised once and merged as bytes
(protobuf merges concatenated messages by appending their repeated fields): about 9 µs a
span, for the same request body.

The stock exporter still sends it (endpoint, headers, TLS, compression, retries, HTTP or
gRPC): :func:`install` has the exporter module's ``encode_spans`` hand a batch of
:class:`Shipped` records to :meth:`SpanEncoder.request` and any other batch to the stock
encoder. Where that module does not call the public ``encode_spans`` (another SDK version),
nothing is installed and the child rebuilds SDK spans for the stock encoder as before.
``tests/unit/test_otel_encode.py`` holds the two encodings byte-equal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from tracedjobs.otel_export import AttributeLimits

logger = logging.getLogger(__name__)

_LOCAL = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE = _LOCAL | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KINDS = {kind.value: Span.SpanKind.Value(f"SPAN_KIND_{kind.name}") for kind in SpanKind}
# Serialised attribute pairs kept; cleared when full (ids and timestamps never repeat).
_CACHE_LIMIT = 4096
# Values whose (type, value) pair names one encoding: not floats (-0.0 == 0.0).
_CACHED_TYPES = (str, int, bool)


def any_value(value: Any) -> AnyValue:
    """An attribute value as OTLP's AnyValue, as the stock encoder maps it."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    raise TypeError(f"invalid type {type(value).__name__} of attribute value {value!r}")


def key_values(attributes: Mapping[str, Any] | None) -> list[KeyValue]:
    out = []
    for key, value in (attributes or {}).items():
        try:
            out.append(KeyValue(key=str(key), value=any_value(value)))
        except TypeError as exc:  # as the stock encoder: the attribute goes, the span stays
            logger.warning("dropped span attribute %r: %s", key, exc)
    return out


class Shipped:
    """A span record passing through the stock ``BatchSpanProcessor``, which reads nothing
    of a span but ``context.trace_flags.sampled`` (only sampled records are shipped)."""

    __slots__ = ("encoder", "record")

    def __init__(self, encoder: SpanEncoder, record: tuple[Any, ...]) -> None:
        self.encoder = encoder
        self.record = record

    context = SpanContext(1, 1, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


class SpanEncoder:
    """Span records (``otel_export.span_record``) to one ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        self.resources: dict[int, tuple[Resource, str | None]] = {}
        self.scopes: dict[int, tuple[InstrumentationScope, str | None]] = {}
        self._pairs: dict[tuple[str, type, Any], bytes] = {}
        self.limits = AttributeLimits()

    def define(self, record: tuple[Any, ...]) -> None:
        """A resource ("R") or instrumentation scope ("I") record."""
        if record[0] == "R":
            _, key, attributes, schema_url = record
            self.resources[key] = (Resource(attributes=key_values(attributes)), schema_url)
        else:
            _, key, name, version, schema_url, attributes = record
            scope = (
                InstrumentationScope()
                if name is None
                else InstrumentationScope(
                    name=name, version=version, attributes=key_values(attributes)
                )
            )
            self.scopes[key] = (scope, schema_url if name is not None else None)

    def shipped(self, record: tuple[Any, ...]) -> Shipped | None:
        """What to hand the batch processor for a span record; None if it is not sampled."""
        return Shipped(self, record) if record[2][2] & 1 else None

    def request(self, batch: Sequence[Shipped]) -> ExportTraceServiceRequest:
        """One request for a batch, grouped by resource, then scope, in order of appearance
        (as the stock encoder groups)."""
        request = ExportTraceServiceRequest()
        by_resource: dict[int, Any] = {}
        by_scope: dict[tuple[int, int], Any] = {}
        for item in batch:
            record = item.record
            key = (record[12], record[13])
            spans = by_scope.get(key)
            if spans is None:
                resource_spans = by_resource.get(key[0])
                if resource_spans is None:
                    resource_spans = by_resource[key[0]] = request.resource_spans.add()
                    resource, schema_url = self.resources.get(key[0], (Resource(), None))
                    resource_spans.resource.CopyFrom(resource)
                    if schema_url:
                        resource_spans.schema_url = schema_url
                scope_spans = resource_spans.scope_spans.add()
                scope, schema_url = self.scopes.get(key[1], (InstrumentationScope(), None))
                scope_spans.scope.CopyFrom(scope)
                if schema_url:
                    scope_spans.schema_url = schema_url
                spans = by_scope[key] = scope_spans.spans
            self._span(spans.add(), record)
        return request

    def _span(self, span: Any, record: tuple[Any, ...]) -> None:
        (_, name, ctx, parent, kind, start, end, attributes, events, links, code, description,
         _, _, dropped_attributes, dropped_events, dropped_links) = record  # fmt: skip
        span.trace_id = ctx[0].to_bytes(16, "big")
        span.span_id = ctx[1].to_bytes(8, "big")
        if ctx[3]:
            span.trace_state = ",".join(f"{k}={v}" for k, v in ctx[3])
        if parent is None:
            span.flags = _LOCAL
        else:
            span.parent_span_id = parent[1].to_bytes(8, "big")
            span.flags = _REMOTE if parent[4] else _LOCAL
        span.name = name
        span.kind = _KINDS[kind]
        span.start_time_unix_nano = start
        span.end_time_unix_nano = end
        if attributes:
            attributes, dropped_attributes = self.limits.apply(attributes, dropped_attributes)
            span.MergeFromString(b"".join([self._pair(k, v) for k, v in attributes.items()]))
        for event_name, timestamp, event_attributes in events or ():
            event = span.events.add(name=event_name, time_unix_nano=timestamp)
            event.attributes.extend(key_values(event_attributes))
        for link_ctx, link_attributes in links or ():
            link = span.links.add(
                trace_id=link_ctx[0].to_bytes(16, "big"),
                span_id=link_ctx[1].to_bytes(8, "big"),
                flags=_REMOTE if link_ctx[4] else _LOCAL,
            )
            link.attributes.extend(key_values(link_attributes))
        status = span.status
        status.SetInParent()
        if code:
            status.code = code
        if description is not None:
            status.message = description
        if dropped_attributes:
            span.dropped_attributes_count = dropped_attributes
        if dropped_events:
            span.dropped_events_count = dropped_events
        if dropped_links:
            span.dropped_links_count = dropped_links

    def _pair(self, key: str, value: Any) -> bytes:
        """One attribute as the bytes of a Span holding only it (merged into the span)."""
        cacheable = value.__class__ in _CACHED_TYPES
        if cacheable:
            cached = self._pairs.get((key, value.__class__, value))
            if cached is not None:
                return cached
        try:
            data = Span(attributes=[KeyValue(key=key, value=any_value(value))]).SerializeToString()
        except TypeError as exc:
            logger.warning("dropped span attribute %r: %s", key, exc)
            return b""
        if cacheable:
            if len(self._pairs) >= _CACHE_LIMIT:
                self._pairs.clear()
            self._pairs[key, value.__class__, value] = data
        return data


def _dispatching(stock: Any) -> Any:
    def encode_spans(spans: Sequence[Any]) -> ExportTraceServiceRequest:
        if spans and type(spans[0]) is Shipped:
            return spans[0].encoder.request(spans)
        return stock(spans)

    encode_spans.stock = stock  # type: ignore[attr-defined]
    return encode_spans


def install(exporter: Any) -> bool:
    """Whether ``exporter`` (a stock OTLP span exporter) now encodes batches of
    :class:`Shipped` records with their :class:`SpanEncoder`. Call it in the export child
    only: it changes the exporter module's ``encode_spans`` for the whole process."""
    module = sys.modules.get(type(exporter).__module__)
    current = getattr(module, "encode_spans", None)
    if current is not None and getattr(current, "stock", None) is trace_encoder.encode_spans:
        return True  # installed already
    if module is None or current is not trace_encoder.encode_spans:
        return False
    module.encode_spans = _dispatching(current)  # type: ignore[attr-defined]
    return True
