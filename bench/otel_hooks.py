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
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import Link, SpanKind  # noqa: E402

from tracedjobs import otel_export, otel_sdk, telemetry  # noqa: E402
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
        telemetry.record_queue_wait(job.queue_name, job.task_name, 0.0013, span)
        with telemetry.job_log_context(job, span):
            pass
        span.finish("succeeded")
        telemetry.record_attempt(
            queue=job.queue_name,
            task_name=job.task_name,
            outcome="succeeded",
            duration=0.0042,
            span=span,
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
    os.environ["OTEL_LOGS_EXPORTER"] = "none"
    # The worker's own set-up: export child, direct attempt spans, histogram tables.
    sdk = otel_sdk.configure(long_running=True)
    assert sdk.export_child is not None and sdk.tracer_provider is not None
    child = sdk.export_child
    # The floor: the stock SDK span and instruments, spans shipped to the same child.
    provider = TracerProvider(resource=otel_floor.RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(otel_export.ChildSpanProcessor(child))
    floor_metrics = otel_floor.Metrics(exemplars=True)
    time.sleep(1.5)  # the child's imports are start-up, not per-job cost
    tracer = provider.get_tracer("floor")
    jobs = [
        Job(id=i, task_name="noop", queue_name="default", args={}, traceparent=TRACEPARENT)
        for i in range(args.n)
    ]
    direct, tables = telemetry._direct, telemetry._tables
    floor, ours, ours_sdk = [], [], []
    for _ in range(args.runs):
        floor.append(timed(lambda i: floor_job(tracer, floor_metrics, i), args.n))
        ours.append(timed(lambda i: our_job(jobs[i]), args.n))
        # The same hooks through the SDK (what an application's own SDK set-up gets).
        telemetry.use_direct_spans(None)
        telemetry.use_histogram_tables(None)
        ours_sdk.append(timed(lambda i: our_job(jobs[i]), args.n))
        telemetry.use_direct_spans(direct)
        telemetry.use_histogram_tables(tables)
        provider.force_flush()
    sdk.shutdown(30)
    receiver.terminate()
    f, o, s = statistics.median(floor), statistics.median(ours), statistics.median(ours_sdk)
    print(f"{'per job (main thread)':<40}{'µs':>8}")
    print(f"{'bare SDK floor (span + 3 records)':<40}{f:>8.1f}")
    print(f"{'tracedjobs hooks, worker set-up':<40}{o:>8.1f}")
    print(f"{'tracedjobs hooks, through the SDK':<40}{s:>8.1f}")
    print(f"{'ratio worker / floor (target <= 1.2)':<40}{o / f:>8.2f}")
    print(f"{'ratio SDK path / floor':<40}{s / f:>8.2f}")
    if child.dropped:
        print(f"(the export child dropped {child.dropped} spans)")


if __name__ == "__main__":
    main()
