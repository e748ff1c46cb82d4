"""tracedjobs' own telemetry cost per job, beside the bare SDK floor, in one process.

    .venv/bin/python bench/otel_hooks.py [--n 20000] [--runs 5]

Both sides use the same SDK set-up as a worker started by the CLI: a TracerProvider with
tracedjobs' export-child span processor, and a MeterProvider with exemplars on (trace-based)
and an in-memory reader.

- floor: what the SDK alone costs per job: one CONSUMER span with tracedjobs' attributes and
  a Link, started and ended, plus the three §7 measurements of an attempt recorded inside it
  (as ``bench/otel_floor.py`` measures it).
- tracedjobs: the worker's hooks for one attempt, in the worker's order: ``process_span``
  (parsing the stored producer context), ``record_queue_wait``, ``job_log_context``,
  ``AttemptSpan.finish`` and ``record_attempt``.

Prints main-thread µs per job (median of ``--runs`` runs of ``--n`` jobs) and the ratio.
The issue's target: tracedjobs ≤ 1.2 × floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import otel_floor  # noqa: E402
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import Link, SpanKind  # noqa: E402

from tracedjobs import otel_export, telemetry  # noqa: E402
from tracedjobs.jobs import Job  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def floor_job(tracer: trace.Tracer, m: otel_floor.Metrics, i: int) -> None:
    with tracer.start_as_current_span(
        "process default",
        kind=SpanKind.CONSUMER,
        attributes=otel_floor.span_attributes(i),
        links=[Link(otel_floor.PRODUCER)],
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        m.record()
        span.set_attribute("tracedjobs.job.outcome", "succeeded")


def our_job(job: Job) -> None:
    with telemetry.process_span(job, worker_name="worker-1") as span:
        telemetry.record_queue_wait(job.queue_name, job.task_name, 0.0013)
        with telemetry.job_log_context(job, span):
            pass
        span.finish("succeeded")
        telemetry.record_attempt(
            queue=job.queue_name, task_name=job.task_name, outcome="succeeded", duration=0.0042
        )


def timed(fn: object, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    receiver, endpoint = otel_floor.start_receiver()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    child = otel_export.ExportChild(spans=True, metrics=False)
    provider = TracerProvider(resource=otel_floor.RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(otel_export.ChildSpanProcessor(child))
    trace.set_tracer_provider(provider)
    floor_metrics = otel_floor.Metrics(exemplars=True)
    metrics.set_meter_provider(
        MeterProvider(
            resource=otel_floor.RESOURCE,
            metric_readers=[InMemoryMetricReader()],
            shutdown_on_exit=False,
            exemplar_filter=TraceBasedExemplarFilter(),
        )
    )
    time.sleep(1.5)  # the child's imports are start-up, not per-job cost
    tracer = provider.get_tracer("floor")
    jobs = [
        Job(id=i, task_name="noop", queue_name="default", args={}, traceparent=TRACEPARENT)
        for i in range(args.n)
    ]
    floor, ours = [], []
    for _ in range(args.runs):
        floor.append(timed(lambda i: floor_job(tracer, floor_metrics, i), args.n))
        ours.append(timed(lambda i: our_job(jobs[i]), args.n))
        provider.force_flush()
    child.close(time.monotonic() + 30)
    receiver.terminate()
    f, o = statistics.median(floor), statistics.median(ours)
    print(f"{'per job (main thread)':<34}{'µs':>8}")
    print(f"{'bare SDK floor (span + 3 records)':<34}{f:>8.1f}")
    print(f"{'tracedjobs hooks':<34}{o:>8.1f}")
    print(f"{'ratio (target <= 1.2)':<34}{o / f:>8.2f}")
    if child.dropped:
        print(f"(the export child dropped {child.dropped} spans)")


if __name__ == "__main__":
    main()
