"""The bare OpenTelemetry SDK cost per job on this machine: the yardstick for tracedjobs' own.

    .venv/bin/python bench/otel_floor.py [--n 5000] [--runs 5] [--tasks 50]

Per job, what any instrumented job runner must pay at least, with the SDK alone (no
tracedjobs code): one CONSUMER span ``process {queue}`` with tracedjobs' attribute set and a
Link, started and ended, and the §7 measurements of an attempt (consumed counter add,
duration histogram record, queue-wait histogram record, with and without exemplars).

Span export paths: none (the span alone), the stock BatchSpanProcessor + OTLP/HTTP exporter
(protobuf encoding in its thread, posting to a receiver in another process), and tracedjobs'
ChildSpanProcessor (plain data shipped to the export child process, which encodes and posts).

Columns: ``main µs`` = wall time of the job loop per job (what the worker's own thread pays,
GIL waits included), ``cpu µs`` = CPU of the whole process per job (every thread, the loop
plus flushing everything), ``child µs`` = CPU of the export child per job (another core).
Median of ``--runs`` runs of ``--n`` jobs each.

Then the stalls: while jobs are produced at a steady rate, how late a 0.5 ms sleep of the main
thread wakes up (p99 / max, ms) — the time it waits for the GIL held by an exporter thread —
the cost of one periodic metric export at ``--tasks`` task names (collect + encode), and the
export child's CPU per span from the records it receives to request bytes: the stock path
(SDK spans rebuilt, ``encode_spans``) and ``tracedjobs.otel_encode``, the one it uses.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import (  # noqa: E402
    encode_metrics,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics._internal.exemplar import (  # noqa: E402
    AlwaysOffExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags  # noqa: E402

from tracedjobs import otel_export  # noqa: E402

BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
)
RESOURCE = Resource({"service.name": "otel-floor", "service.instance.id": "bench"})
PRODUCER = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))


def span_attributes(i: int) -> dict[str, Any]:
    # tracedjobs' CONSUMER span attributes (telemetry.process_span)
    return {
        "messaging.system": "tracedjobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": str(i),
        "messaging.consumer.group.name": "default",
        "tracedjobs.worker.name": "worker-1",
        "tracedjobs.task.name": "noop",
        "tracedjobs.job.attempt": 1,
    }


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "otlp_receiver.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


# -- one run of a variant ------------------------------------------------------------------


class Run:
    """Measures the job loop's wall time and the CPU of this process and of reaped children."""

    def __enter__(self) -> Run:
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.child0 = _children_cpu()
        return self

    def loop_done(self) -> None:
        self.loop = time.perf_counter() - self.t0

    def __exit__(self, *exc: Any) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.child = _children_cpu() - self.child0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def job_span(tracer: Any, i: int) -> None:
    with tracer.start_as_current_span(
        "process default",
        kind=SpanKind.CONSUMER,
        attributes=span_attributes(i),
        links=[Link(PRODUCER)],
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        span.set_attribute("tracedjobs.job.outcome", "succeeded")


class Metrics:
    """The §7 instruments of an attempt, on an SDK MeterProvider (in-memory reader)."""

    def __init__(self, exemplars: bool) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            resource=RESOURCE,
            metric_readers=[self.reader],
            shutdown_on_exit=False,
            exemplar_filter=TraceBasedExemplarFilter() if exemplars else AlwaysOffExemplarFilter(),
        )
        meter = self.provider.get_meter("tracedjobs")
        self.consumed = meter.create_counter("messaging.client.consumed.messages")
        self.duration = meter.create_histogram(
            "messaging.process.duration", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
        )
        self.queue_wait = meter.create_histogram(
            "tracedjobs.job.queue_wait", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
        )

    def record(self, task: str = "noop") -> None:
        # Fresh dicts per call, as the worker builds them (the SDK copies them anyway).
        base = {
            "messaging.system": "tracedjobs",
            "messaging.destination.name": "default",
            "tracedjobs.task.name": task,
        }
        outcome = {**base, "tracedjobs.job.outcome": "succeeded"}
        self.consumed.add(1, outcome)
        self.duration.record(0.0042, outcome)
        self.queue_wait.record(0.0013, base)


def child_fixed_cpu(endpoint: str) -> float:
    """CPU of an export child that exports nothing (imports, shutdown): not a per-job cost."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    before = _children_cpu()
    child = otel_export.ExportChild(spans=True, metrics=False)
    time.sleep(1.5)
    child.close(time.monotonic() + 30)
    return _children_cpu() - before


CHILD_FIXED = 0.0


def variant_span(kind: str, n: int, endpoint: str) -> dict[str, float]:
    child = None
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    if kind == "bsp":
        # A queue that holds the whole run: the stock 2,048 would drop spans (then never
        # encoded, and the cost would look smaller than it is).
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), max_queue_size=n + 1000
            )
        )
    elif kind == "child":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        child = otel_export.ExportChild(spans=True, metrics=False)
        provider.add_span_processor(otel_export.ChildSpanProcessor(child))
        time.sleep(1.5)  # its imports are start-up, not per-job cost
    tracer = provider.get_tracer("tracedjobs")
    for i in range(200):  # warm-up
        job_span(tracer, i)
    provider.force_flush()
    with Run() as run:
        for i in range(n):
            job_span(tracer, i)
        run.loop_done()
        provider.force_flush()
        if child is not None:
            child.close(time.monotonic() + 60)
    provider.shutdown()
    if child is not None and child.dropped:
        raise RuntimeError(f"the export child dropped {child.dropped} spans: not comparable")
    child_cpu = max(run.child - CHILD_FIXED, 0.0) if kind == "child" else 0.0
    return {"main": run.loop / n, "cpu": run.cpu / n, "child": child_cpu / n}


def variant_metrics(exemplars: bool, n: int) -> dict[str, float]:
    m = Metrics(exemplars)
    tracer = TracerProvider(resource=RESOURCE, shutdown_on_exit=False).get_tracer("t")
    # Exemplars are taken inside the attempt's span (as in the worker); the span's own cost
    # is measured above, so time the span alone and subtract it.
    with tracer.start_as_current_span("process default"):
        for _ in range(200):
            m.record()
        with Run() as run:
            for _ in range(n):
                m.record()
            run.loop_done()
    return {"main": run.loop / n, "cpu": run.cpu / n, "child": 0.0}


# -- stalls ----------------------------------------------------------------------------------


def lateness(kind: str, endpoint: str, secs: float, rate: float) -> list[float]:
    """Produce ``rate`` jobs/s for ``secs``; between jobs, sleep 0.5 ms and record how late
    the main thread wakes up (ms) — GIL waits behind an exporter thread show up here."""
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    child = None
    if kind == "bsp":
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
    elif kind == "child":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        child = otel_export.ExportChild(spans=True, metrics=False)
        provider.add_span_processor(otel_export.ChildSpanProcessor(child))
        time.sleep(1.5)
    tracer = provider.get_tracer("tracedjobs")
    late: list[float] = []
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < secs:
        job_span(tracer, i)
        i += 1
        next_job = t0 + i / rate
        while (now := time.perf_counter()) < next_job:
            time.sleep(0.0005)
            late.append((time.perf_counter() - now - 0.0005) * 1000)
    provider.force_flush()
    if child is not None:
        child.close(time.monotonic() + 30)
    provider.shutdown()
    return late


def metric_export_cost(tasks: int, runs: int) -> dict[str, float]:
    """One periodic export at ``tasks`` task names × 3 outcomes: collect, then encode (what
    PeriodicExportingMetricReader's thread does holding the GIL), or convert for the child."""
    import marshal

    m = Metrics(exemplars=True)
    tracer = TracerProvider(resource=RESOURCE, shutdown_on_exit=False).get_tracer("t")
    with tracer.start_as_current_span("process default"):
        for t in range(tasks):
            for outcome in ("succeeded", "failed", "retried"):
                attrs = {
                    "messaging.system": "tracedjobs",
                    "messaging.destination.name": "default",
                    "tracedjobs.task.name": f"task_{t}",
                    "tracedjobs.job.outcome": outcome,
                }
                for _ in range(5):
                    m.consumed.add(1, attrs)
                    m.duration.record(0.01 * (t % 7), attrs)
            m.record(f"task_{t}")
    collect, encode, ship = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        data = m.reader.get_metrics_data()
        t1 = time.perf_counter()
        encode_metrics(data).SerializeToString()
        t2 = time.perf_counter()
        marshal.dumps([("M", otel_export.to_plain(data))])
        t3 = time.perf_counter()
        collect.append(t1 - t0)
        encode.append(t2 - t1)
        ship.append(t3 - t2)
    series = sum(
        len(metric.data.data_points)
        for rm in data.resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )
    return {
        "series": series,
        "collect_ms": statistics.median(collect) * 1000,
        "encode_ms": statistics.median(encode) * 1000,
        "ship_ms": statistics.median(ship) * 1000,
    }


def span_encoding_cost(n: int, runs: int) -> dict[str, float]:
    """The export child's work per span, from the records it receives to request bytes: the
    stock path (rebuild SDK spans, ``encode_spans``) and tracedjobs' ``otel_encode``."""
    import marshal

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracedjobs import otel_encode

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tracedjobs")
    for i in range(n):
        job_span(tracer, i)
    spans = memory.get_finished_spans()
    scope = spans[0].instrumentation_scope
    body = marshal.dumps(
        [otel_export.resource_record(1, RESOURCE), otel_export.scope_record(2, scope)]
        + [otel_export.span_record(span, 1, 2) for span in spans]
    )
    stock, ours = [], []
    for _ in range(runs):
        records = marshal.loads(body)
        rebuild, encoder = otel_export._Rebuilder(), otel_encode.SpanEncoder()
        for r in records[:2]:
            rebuild.define(r)
            encoder.define(r)
        t0 = time.process_time()
        encode_spans([rebuild.span(r) for r in records[2:]]).SerializeToString()
        t1 = time.process_time()
        shipped = [encoder.shipped(r) for r in records[2:]]
        encoder.request(shipped).SerializeToString()  # type: ignore[arg-type]
        t2 = time.process_time()
        stock.append((t1 - t0) / len(spans))
        ours.append((t2 - t1) / len(spans))
    return {"stock": statistics.median(stock), "ours": statistics.median(ours)}


# -- report ----------------------------------------------------------------------------------


def median_of(runs: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [fn() for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="jobs per run (default 5000)")
    ap.add_argument("--runs", type=int, default=5, help="runs per variant; median (default 5)")
    ap.add_argument("--tasks", type=int, default=50, help="task names for the metric export")
    ap.add_argument("--stall-secs", type=float, default=5.0)
    ap.add_argument("--stall-rate", type=float, default=1000.0, help="jobs/s while measuring")
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    a = ap.parse_args()
    for var in [v for v in os.environ if v.startswith("OTEL_")]:
        del os.environ[var]
    receiver, endpoint = start_receiver()
    global CHILD_FIXED
    try:
        CHILD_FIXED = statistics.median(child_fixed_cpu(endpoint) for _ in range(3))
        rows = {
            "span, no processor": median_of(a.runs, lambda: variant_span("none", a.n, endpoint)),
            "span + BatchSpanProcessor + OTLP/HTTP": median_of(
                a.runs, lambda: variant_span("bsp", a.n, endpoint)
            ),
            "span + ChildSpanProcessor (export child)": median_of(
                a.runs, lambda: variant_span("child", a.n, endpoint)
            ),
            "3 measurements, exemplars on (trace_based)": median_of(
                a.runs, lambda: variant_metrics(True, a.n)
            ),
            "3 measurements, exemplars off": median_of(a.runs, lambda: variant_metrics(False, a.n)),
        }
        stalls = {
            kind: lateness(kind, endpoint, a.stall_secs, a.stall_rate)
            for kind in ("none", "bsp", "child")
        }
        export = metric_export_cost(a.tasks, max(a.runs, 3))
        encoding = span_encoding_cost(512, max(a.runs, 3))
    finally:
        receiver.terminate()
        receiver.wait()

    us = 1e6
    print(
        f"OpenTelemetry SDK floor per job: N={a.n:,} jobs, median of {a.runs} runs, "
        f"python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}"
    )
    w = max(map(len, rows))
    print(f"{'':<{w}}  {'main µs':>8}  {'cpu µs':>8}  {'child µs':>8}")
    for name, r in rows.items():
        print(
            f"{name:<{w}}  {r['main'] * us:>8.1f}  {r['cpu'] * us:>8.1f}  {r['child'] * us:>8.1f}"
        )
    bsp = rows["span + BatchSpanProcessor + OTLP/HTTP"]
    child = rows["span + ChildSpanProcessor (export child)"]
    metrics_on = rows["3 measurements, exemplars on (trace_based)"]
    print(
        f"{'floor = span (BSP+OTLP) + 3 measurements w/ exemplars':<{w}}  "
        f"{(bsp['main'] + metrics_on['main']) * us:>8.1f}  "
        f"{(bsp['cpu'] + metrics_on['cpu']) * us:>8.1f}"
    )
    print(
        f"{'same with the export child':<{w}}  "
        f"{(child['main'] + metrics_on['main']) * us:>8.1f}  "
        f"{(child['cpu'] + metrics_on['cpu']) * us:>8.1f}  {child['child'] * us:>8.1f}"
    )
    print()
    print(
        f"main-thread wake-up lateness while producing {a.stall_rate:.0f} jobs/s for "
        f"{a.stall_secs:.0f} s (0.5 ms sleeps), ms:"
    )
    for kind, label in (
        ("none", "no export"),
        ("bsp", "BatchSpanProcessor + OTLP/HTTP"),
        ("child", "export child"),
    ):
        xs = stalls[kind]
        print(
            f"  {label:<32} p50 {pct(xs, 50):6.2f}  p99 {pct(xs, 99):6.2f}  "
            f"p99.9 {pct(xs, 99.9):6.2f}  max {max(xs):6.2f}"
        )
    print()
    print(f"export child start-up + shutdown: {CHILD_FIXED * 1000:.0f} ms CPU (subtracted above)")
    print(
        f"export child, records to OTLP bytes per span (batches of 512): stock (rebuilt SDK "
        f"spans + encode_spans) {encoding['stock'] * us:.1f} µs, tracedjobs' otel_encode "
        f"{encoding['ours'] * us:.1f} µs"
    )
    print(
        f"one metric export, {a.tasks} task names ({export['series']:.0f} series): "
        f"collect {export['collect_ms']:.2f} ms, OTLP encode {export['encode_ms']:.2f} ms "
        f"(in-process thread, GIL held) vs plain+marshal for the child "
        f"{export['ship_ms']:.2f} ms"
    )
    if a.json:
        import json

        floor = {
            "floor_cpu_us": (bsp["cpu"] + metrics_on["cpu"]) * us,
            "floor_child_cpu_us": (child["cpu"] + metrics_on["cpu"]) * us,
            "rows": {k: {f: v * us for f, v in r.items()} for k, r in rows.items()},
            "child_encoding_us": {k: v * us for k, v in encoding.items()},
        }
        print("FLOOR_JSON " + json.dumps(floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
