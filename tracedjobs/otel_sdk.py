"""OpenTelemetry SDK set-up for the ``tracedjobs`` command line (the library never does this).

Reads the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the per-signal
``…_TRACES_ENDPOINT``/``…_METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_PROTOCOL``
(``http/protobuf``, the default, or ``grpc``), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_METRIC_EXPORT_INTERVAL``.
With an endpoint, log records are exported too (``OTEL_LOGS_EXPORTER=none`` turns that off):
each one emitted inside a job carries its trace and span ids and the job's id and task name.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

logger = logging.getLogger(__name__)


@dataclass
class SdkHandle:
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    metrics_server: Any = None
    readers: list[MetricReader] = field(default_factory=list)

    def shutdown(self) -> None:
        """Flush and stop exporters (spans and metrics of the last jobs are not lost)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        if self.metrics_server is not None:
            server, _thread = self.metrics_server
            server.shutdown()
            server.server_close()


def _protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _endpoint_set(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def _span_exporter() -> Any:
    if _protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def _metric_exporter() -> Any:
    if _protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    return OTLPMetricExporter()


def _log_exporter() -> Any:
    if _protocol("LOGS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
            OTLPLogExporter,
        )
    return OTLPLogExporter()


def _exporter_off(signal: str) -> bool:
    return os.environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none"


def configure(
    *,
    default_service_name: str = "tracedjobs-worker",
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> SdkHandle:
    """Install SDK providers when there is somewhere to send data; otherwise stay no-op."""
    handle = SdkHandle()
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return handle
    if not os.environ.get("OTEL_SERVICE_NAME"):
        os.environ["OTEL_SERVICE_NAME"] = default_service_name
    # Each process is its own instance (Prometheus shows it on target_info).
    resource = Resource.create()
    if "service.instance.id" not in resource.attributes:
        resource = resource.merge(Resource({"service.instance.id": str(uuid.uuid4())}))

    if _endpoint_set("TRACES") and not _exporter_off("TRACES"):
        handle.tracer_provider = TracerProvider(resource=resource)
        handle.tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter()))
        trace.set_tracer_provider(handle.tracer_provider)

    if _endpoint_set("METRICS") and not _exporter_off("METRICS"):
        interval_ms = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
        handle.readers.append(
            PeriodicExportingMetricReader(_metric_exporter(), export_interval_millis=interval_ms)
        )
    if metrics_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        handle.readers.append(PrometheusMetricReader())
        handle.metrics_server = start_http_server(metrics_port, addr=metrics_host)
        logger.info("Prometheus metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    if handle.readers:
        handle.meter_provider = MeterProvider(resource=resource, metric_readers=handle.readers)
        metrics.set_meter_provider(handle.meter_provider)

    if _endpoint_set("LOGS") and not _exporter_off("LOGS"):
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        handle.logger_provider = LoggerProvider(resource=resource)
        handle.logger_provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter()))
        set_logger_provider(handle.logger_provider)
        handle.log_handler = LoggingHandler(logger_provider=handle.logger_provider)
        from tracedjobs.telemetry import LogContextFilter

        handle.log_handler.addFilter(LogContextFilter())
        logging.getLogger().addHandler(handle.log_handler)
    return handle
