"""OpenTelemetry SDK set-up for the ``tracedjobs`` command line (the library never does this).

Reads the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the per-signal
``…_TRACES_ENDPOINT``/``…_METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_PROTOCOL``
(``http/protobuf``, the default, or ``grpc``), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_METRIC_EXPORT_INTERVAL``.
With an endpoint, log records are exported too (``OTEL_LOGS_EXPORTER=none`` turns that off):
each one emitted inside a job carries its trace and span ids and the job's id and task name.

``TRACEDJOBS_OTEL_EXPORT`` chooses where spans and metrics are encoded and sent: ``process``
(a child process, see ``otel_export``; this interpreter only hands over plain data: the
default for a long-running worker) or ``thread`` (the SDK's own exporter threads in this
process: the default for short commands such as ``defer``, which would otherwise race the
child's start-up against the exit bound). Either way a command never waits on telemetry
longer than ``TRACEDJOBS_OTEL_SHUTDOWN_TIMEOUT`` seconds (1) at exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from tracedjobs import otel_export, otel_lite, telemetry

logger = logging.getLogger(__name__)

EXPORT_MODE_ENV = "TRACEDJOBS_OTEL_EXPORT"
SHUTDOWN_TIMEOUT_ENV = "TRACEDJOBS_OTEL_SHUTDOWN_TIMEOUT"
EXPORT_MODES = ("process", "thread")


def export_mode(default: str = "process") -> str:
    mode = os.environ.get(EXPORT_MODE_ENV, "").strip().lower() or default
    if mode not in EXPORT_MODES:
        logger.warning("%s=%r is not one of %s; using %r", EXPORT_MODE_ENV, mode,
                       "/".join(EXPORT_MODES), default)  # fmt: skip
        return default
    return mode


def shutdown_timeout() -> float:
    try:
        return max(float(os.environ.get(SHUTDOWN_TIMEOUT_ENV, "1")), 0.0)
    except ValueError:
        return 1.0


@dataclass
class SdkHandle:
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    metrics_server: Any = None
    readers: list[MetricReader] = field(default_factory=list)
    export_child: otel_export.ExportChild | None = None

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush and stop exporters, waiting at most ``timeout`` seconds in all.

        The providers' own shutdowns can wait on an exporter retrying an unreachable endpoint
        (seconds per signal), so they run in daemon threads joined against one deadline.
        """
        deadline = time.monotonic() + (shutdown_timeout() if timeout is None else timeout)
        telemetry.use_direct_spans(None)
        telemetry.use_histogram_tables(None)
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
        stops = [
            threading.Thread(target=p.shutdown, name=f"tracedjobs-otel-{name}-stop", daemon=True)
            for name, p in (
                ("traces", self.tracer_provider),
                ("metrics", self.meter_provider),
                ("logs", self.logger_provider),
            )
            if p is not None
        ]
        for t in stops:
            t.start()
        for t in stops:
            t.join(max(deadline - time.monotonic(), 0))
        if self.export_child is not None:
            # Both providers have handed their last data to the child by now (or ran out
            # of time); the child gets what is left of the deadline.
            self.export_child.close(deadline)
        if self.metrics_server is not None:
            server, _thread = self.metrics_server
            server.shutdown()
            server.server_close()
        if any(t.is_alive() for t in stops):
            logger.warning("telemetry: gave up flushing after the shutdown timeout")


def _endpoint_set(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def _log_exporter() -> Any:
    if otel_export.protocol("LOGS") == "grpc":
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
    long_running: bool | None = None,
) -> SdkHandle:
    """Install SDK providers when there is somewhere to send data; otherwise stay no-op.

    ``long_running`` (a worker) makes the export child the default; None infers it from
    ``default_service_name`` ("tracedjobs-worker" is the worker's).
    """
    if long_running is None:
        long_running = default_service_name == "tracedjobs-worker"
    handle = SdkHandle()
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return handle
    if not os.environ.get("OTEL_SERVICE_NAME"):
        os.environ["OTEL_SERVICE_NAME"] = default_service_name
    # Each process is its own instance (Prometheus shows it on target_info).
    resource = Resource.create()
    if "service.instance.id" not in resource.attributes:
        resource = resource.merge(Resource({"service.instance.id": str(uuid.uuid4())}))

    want_spans = _endpoint_set("TRACES") and not _exporter_off("TRACES")
    want_metrics = _endpoint_set("METRICS") and not _exporter_off("METRICS")
    mode = export_mode("process" if long_running else "thread")
    if mode == "process" and (want_spans or want_metrics):
        # Started first: its imports take a few hundred ms (seconds on a loaded machine),
        # overlapping our own start-up.
        try:
            handle.export_child = otel_export.ExportChild(spans=want_spans, metrics=want_metrics)
        except OSError as exc:
            logger.warning("cannot start the telemetry exporter process (%s); exporting "
                           "from this process instead", exc)  # fmt: skip
    child = handle.export_child

    if want_spans:
        # shutdown_on_exit=False: SdkHandle.shutdown bounds the wait; an atexit hook would not.
        handle.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        processor: Any = (
            otel_export.ChildSpanProcessor(child)
            if child is not None
            else BatchSpanProcessor(otel_export.span_exporter())
        )
        handle.tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(handle.tracer_provider)
        if child is not None and trace.get_tracer_provider() is handle.tracer_provider:
            # Attempt and send spans skip the SDK's Span (see otel_lite): this provider has
            # no other processor.
            scope = InstrumentationScope(telemetry.INSTRUMENTATION_NAME)
            sink = processor.lite_sink(resource, scope)
            telemetry.use_direct_spans(otel_lite.DirectSpans(handle.tracer_provider, sink))

    if want_metrics:
        interval_ms = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
        exporter = (
            otel_export.ChildMetricExporter(child)
            if child is not None
            else otel_export.metric_exporter()
        )
        handle.readers.append(
            PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
        )
    if metrics_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        handle.readers.append(PrometheusMetricReader())
        handle.metrics_server = start_http_server(metrics_port, addr=metrics_host)
        logger.info("Prometheus metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    if handle.readers:
        # The histograms are aggregated by tracedjobs and added to what these readers collect
        # (see otel_lite): a record costs a dict update instead of a pass through the SDK.
        tables = telemetry.histogram_tables()
        scope = InstrumentationScope(telemetry.INSTRUMENTATION_NAME)
        source = otel_lite.table_source(tables, scope, resource)
        handle.meter_provider = MeterProvider(
            resource=resource, metric_readers=handle.readers, shutdown_on_exit=False
        )
        metrics.set_meter_provider(handle.meter_provider)
        if metrics.get_meter_provider() is handle.meter_provider and otel_lite.with_tables(
            handle.readers, source
        ):
            telemetry.use_histogram_tables(tables)

    if _endpoint_set("LOGS") and not _exporter_off("LOGS"):
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        # Logs stay in this process (they are few); their exit is bounded like the rest.
        handle.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        handle.logger_provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter()))
        set_logger_provider(handle.logger_provider)
        handle.log_handler = LoggingHandler(logger_provider=handle.logger_provider)
        handle.log_handler.addFilter(telemetry.LogContextFilter())
        logging.getLogger().addHandler(handle.log_handler)
    return handle
