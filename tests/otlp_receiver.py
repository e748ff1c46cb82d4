"""A real OTLP/HTTP receiver for tests: decodes the protobuf requests with opentelemetry-proto.

Processes under test get ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint`` and export to it
exactly as they would to a collector; tests then look at the decoded spans, metric points
and log records.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class SpanLink:
    trace_id: str
    span_id: str


@dataclass
class ReceivedSpan:
    name: str
    kind: str  # "PRODUCER", "CONSUMER", ...
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: list[SpanLink]
    status: str  # "UNSET", "OK", "ERROR"
    events: list[tuple[str, dict[str, Any]]]
    scope: tuple[str, str] = ("", "")  # instrumentation scope name, version
    start_ns: int = 0
    end_ns: int = 0
    status_message: str = ""


@dataclass
class MetricPoint:
    name: str
    unit: str
    kind: str  # "sum", "gauge", "histogram"
    attributes: dict[str, Any]
    resource: dict[str, Any]
    value: float | None = None  # sum and gauge
    count: int | None = None  # histogram
    bounds: list[float] = field(default_factory=list)
    exemplar_trace_ids: list[str] = field(default_factory=list)


@dataclass
class LogRecord:
    body: Any
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """An OTLP/HTTP server on 127.0.0.1 collecting what it receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.points: list[MetricPoint] = []
        self.logs: list[LogRecord] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                response = receiver._handle(self.path, body)
                if response is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = response.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a process exporting here, fast (export every 0.3 s)."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            **extra,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None)

    # -- OTLP/gRPC --------------------------------------------------------------------

    _grpc_server: Any = None

    def start_grpc(self) -> str:
        """Also accept OTLP over gRPC; returns the endpoint (``http://127.0.0.1:PORT``)."""
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                receiver._add_traces(request)
                return ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                receiver._add_metrics(request)
                return ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                receiver._add_logs(request)
                return ExportLogsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc_server = server
        return f"http://127.0.0.1:{port}"

    # -- decoding ---------------------------------------------------------------------

    def _handle(self, path: str, body: bytes) -> Any:
        if path == "/v1/traces":
            self._add_traces(ExportTraceServiceRequest.FromString(body))
            return ExportTraceServiceResponse()
        if path == "/v1/metrics":
            self._add_metrics(ExportMetricsServiceRequest.FromString(body))
            return ExportMetricsServiceResponse()
        if path == "/v1/logs":
            self._add_logs(ExportLogsServiceRequest.FromString(body))
            return ExportLogsServiceResponse()
        return None

    def _add_traces(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        ReceivedSpan(
                            name=s.name,
                            kind=PbSpan.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=_attrs(s.attributes),
                            resource=resource,
                            links=[SpanLink(li.trace_id.hex(), li.span_id.hex()) for li in s.links],
                            status={0: "UNSET", 1: "OK", 2: "ERROR"}[s.status.code],
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            scope=(ss.scope.name, ss.scope.version),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            status_message=s.status.message,
                        )
                    )
        with self._lock:
            self.spans += spans

    def _add_metrics(self, request: ExportMetricsServiceRequest) -> None:
        points = []
        for rm in request.resource_metrics:
            resource = _attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    for p in getattr(m, kind).data_points:
                        point = MetricPoint(
                            name=m.name,
                            unit=m.unit,
                            kind=kind,
                            attributes=_attrs(p.attributes),
                            resource=resource,
                            exemplar_trace_ids=[e.trace_id.hex() for e in p.exemplars],
                        )
                        if kind == "histogram":
                            point.count = p.count
                            point.bounds = list(p.explicit_bounds)
                        else:
                            point.value = p.as_double if p.HasField("as_double") else p.as_int
                        points.append(point)
        with self._lock:
            self.points += points

    def _add_logs(self, request: ExportLogsServiceRequest) -> None:
        records = []
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    records.append(
                        LogRecord(
                            body=_value(r.body),
                            trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(),
                            attributes=_attrs(r.attributes),
                        )
                    )
        with self._lock:
            self.logs += records

    # -- queries ------------------------------------------------------------------------

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.name == name]

    def points_named(self, name: str) -> list[MetricPoint]:
        with self._lock:
            return [p for p in self.points if p.name == name]

    def log_records(self) -> list[LogRecord]:
        with self._lock:
            return list(self.logs)


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
