"""Spans, links, attributes and metric points, checked with the SDK's in-memory exporters."""

from __future__ import annotations

import datetime
import logging
import marshal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import Otel, installed_otel
from tracedjobs import otel_export, otel_lite, telemetry
from tracedjobs.jobs import Job, Status


class _InlineChild:
    """Stands in for ``otel_export.ExportChild``: each record goes through marshal and the
    export child's own rebuilding, then straight into the in-memory exporter."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.rebuild = otel_export._Rebuilder()
        self.keys: dict[int, int] = {}

    def submit(self, record: tuple[Any, ...]) -> None:
        record = marshal.loads(marshal.dumps(record))
        if record[0] == "S":
            self.exporter.export([self.rebuild.span(record)])
        else:
            self.rebuild.define(record)

    def key_of(self, obj: Any, define: Any) -> int:
        if id(obj) not in self.keys:
            self.keys[id(obj)] = len(self.keys) + 1
            self.submit(define(self.keys[id(obj)]))
        return self.keys[id(obj)]


@pytest.fixture(params=["sdk", "direct"])
def otel(request: pytest.FixtureRequest) -> Iterator[Otel]:
    """SDK providers with in-memory exporters (shared: the API allows setting them once).

    Every test runs twice: through the SDK (an application's own set-up) and on the
    worker's direct path (``otel_lite``: spans without the SDK's Span, rebuilt as the export
    child rebuilds them; the histograms from tables added to the reader's collection)."""
    installed = installed_otel()
    installed.spans.clear()
    collect = installed.reader._collect  # type: ignore[attr-defined]
    if request.param == "direct":
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        processor = otel_export.ChildSpanProcessor(_InlineChild(installed.spans))  # type: ignore[arg-type]
        sink = processor.lite_sink(provider.resource, InstrumentationScope("tracedjobs"))
        telemetry.use_direct_spans(otel_lite.DirectSpans(provider, sink))
        tables = telemetry.histogram_tables()
        source = otel_lite.table_source(tables, InstrumentationScope("tracedjobs"), Resource({}))
        assert otel_lite.with_tables([installed.reader], source)
        telemetry.use_histogram_tables(tables)
    try:
        yield installed
    finally:
        telemetry.use_direct_spans(None)
        telemetry.use_histogram_tables(None)
        installed.reader._collect = collect  # type: ignore[attr-defined]
        telemetry.withdraw_gauges("test")


def make_job(*, queue: str = "emails", traceparent: str | None = None, attempts: int = 0) -> Job:
    return Job(
        id=42,
        queue_name=queue,
        task_name="send_email",
        priority=0,
        lock=None,
        queueing_lock=None,
        args={},
        status=Status.DOING,
        scheduled_at=None,
        created_at=datetime.datetime.now(datetime.UTC),
        attempts=attempts,
        attempt_id=7,
        traceparent=traceparent,
        tracestate=None,
    )


def test_send_span_is_a_producer_child_of_the_current_span_and_its_context_is_stored(otel: Otel):
    with (
        otel.tracer.start_as_current_span("web request") as request,
        telemetry.send_span("emails", "send_email", 1) as handle,
    ):
        handle.set_job_ids([42])
    (send,) = otel.finished("send emails")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent.span_id == request.get_span_context().span_id
    assert send.attributes["messaging.system"] == "tracedjobs"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == "emails"
    assert send.attributes["messaging.message.id"] == "42"
    ctx = send.get_span_context()
    assert handle.carrier.traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert int(handle.carrier.traceparent[-2:], 16) == int(ctx.trace_flags)


def test_a_batch_is_one_send_span_whose_context_every_job_stores(otel: Otel):
    with telemetry.send_span("emails", "send_email", 3) as send:
        pass
    (send_span,) = otel.finished("send emails")
    assert send_span.attributes["messaging.batch.message_count"] == 3
    assert otel.finished("create emails") == []  # no span per job: it cost more than the insert
    ctx = send_span.get_span_context()
    assert send.carrier.traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")


def _producer_traceparent(otel: Otel) -> tuple[str, Any]:
    with telemetry.send_span("emails", "send_email", 1) as send:
        pass
    return send.carrier.traceparent or "", otel.finished("send emails")[-1].get_span_context()


def test_process_span_is_a_consumer_linked_to_the_producer(otel: Otel):
    traceparent, producer = _producer_traceparent(otel)
    with telemetry.process_span(make_job(traceparent=traceparent, attempts=2), worker_name="w1"):
        pass
    (process,) = otel.finished("process emails")
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is None
    assert [(li.context.trace_id, li.context.span_id) for li in process.links] == [
        (producer.trace_id, producer.span_id)
    ]
    assert process.context.trace_id != producer.trace_id
    attributes = process.attributes
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.operation.name"] == "process"
    assert attributes["messaging.destination.name"] == "emails"
    assert attributes["messaging.consumer.group.name"] == "emails"
    assert attributes["messaging.message.id"] == "42"
    assert attributes["tracedjobs.task.name"] == "send_email"
    assert attributes["tracedjobs.job.attempt"] == 3


def test_trace_parent_parent_makes_the_attempt_a_child_of_the_producer(otel: Otel):
    traceparent, producer = _producer_traceparent(otel)
    with telemetry.process_span(
        make_job(traceparent=traceparent), worker_name="w1", trace_parent="parent"
    ):
        pass
    (process,) = otel.finished("process emails")
    assert process.parent.span_id == producer.span_id
    assert process.context.trace_id == producer.trace_id
    assert not process.links


def test_missing_unsampled_and_malformed_contexts_give_no_link_and_no_crash(
    otel: Otel, caplog: pytest.LogCaptureFixture
):
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with caplog.at_level(logging.WARNING, logger="tracedjobs.telemetry"):
        for traceparent in (None, unsampled, "garbage", "garbage too"):
            with telemetry.process_span(make_job(traceparent=traceparent), worker_name="w1"):
                pass
    spans = otel.finished("process emails")
    assert len(spans) == 4
    assert all(not s.links for s in spans)
    warnings = [r for r in caplog.records if "invalid stored trace context" in r.message]
    assert len(warnings) <= 1  # logged once per process, never per job


def test_failed_attempt_records_the_exception_and_sets_status_error(otel: Otel):
    with telemetry.process_span(make_job(), worker_name="w1") as span:
        error = ValueError("bad address")
        span.finish("failed", error, telemetry.error_type_of(error))
    (process,) = otel.finished("process emails")
    assert process.status.status_code == StatusCode.ERROR
    assert process.attributes["tracedjobs.job.outcome"] == "failed"
    assert process.attributes["error.type"] == "ValueError"
    assert [e.name for e in process.events] == ["exception"]


def test_succeeded_and_deferred_attempts_are_not_errors(otel: Otel):
    for outcome in ("succeeded", "deferred"):
        with telemetry.process_span(make_job(), worker_name="w1") as span:
            span.finish(outcome)
    spans = otel.finished("process emails")
    assert [s.attributes["tracedjobs.job.outcome"] for s in spans] == ["succeeded", "deferred"]
    assert all(s.status.status_code == StatusCode.UNSET for s in spans)


def test_a_late_result_after_a_rescue_is_marked_lost_on_its_span(otel: Otel):
    with telemetry.process_span(make_job(), worker_name="w1") as span:
        span.finish_discarded()
    (process,) = otel.finished("process emails")
    assert process.attributes["tracedjobs.job.outcome"] == "lost"
    assert process.attributes["tracedjobs.job.late_result_discarded"] is True


def test_attempt_metrics_have_units_attributes_buckets_and_an_exemplar_of_the_trace(otel: Otel):
    with telemetry.process_span(make_job(queue="exq"), worker_name="w1") as span:
        telemetry.record_queue_wait("exq", "send_email", 0.3)
        telemetry.record_attempt(
            queue="exq", task_name="send_email", outcome="failed", duration=0.042,
            error_type="ValueError",
        )  # fmt: skip
    trace_id = int(span.trace_id or "0", 16)
    data = otel.reader.get_metrics_data()

    consumed = [(m, p) for m, p in otel.points("messaging.client.consumed.messages", data)
                if p.attributes["messaging.destination.name"] == "exq"]  # fmt: skip
    (metric, point) = consumed[0]
    assert metric.unit == "{message}"
    assert dict(point.attributes) == {
        "messaging.system": "tracedjobs",
        "messaging.destination.name": "exq",
        "tracedjobs.task.name": "send_email",
        "tracedjobs.job.outcome": "failed",
        "error.type": "ValueError",
    }
    durations = [(m, p) for m, p in otel.points("messaging.process.duration", data)
                 if p.attributes["messaging.destination.name"] == "exq"]  # fmt: skip
    (metric, point) = durations[0]
    assert metric.unit == "s"
    assert tuple(point.explicit_bounds) == tuple(telemetry.DURATION_BUCKETS)
    assert point.explicit_bounds[0] == 0.005 and point.explicit_bounds[-1] >= 3600
    # 42 ms lands in the (0.025, 0.05] bucket, not in the first one.
    assert point.bucket_counts[list(point.explicit_bounds).index(0.05)] == 1
    assert "error.type" not in point.attributes
    assert point.exemplars and point.exemplars[-1].trace_id == trace_id

    waits = [(m, p) for m, p in otel.points("tracedjobs.job.queue_wait", data)
             if p.attributes["messaging.destination.name"] == "exq"]  # fmt: skip
    (metric, point) = waits[0]
    assert metric.unit == "s" and point.sum == pytest.approx(0.3)
    assert point.exemplars[-1].trace_id == trace_id


def test_sent_messages_are_counted_per_queue_and_task(otel: Otel, request: pytest.FixtureRequest):
    queue = f"sentq-{request.node.callspec.id}"
    telemetry.record_sent(queue, "send_email", 3)
    (metric, point) = next(
        (m, p) for m, p in otel.points("messaging.client.sent.messages")
        if p.attributes["messaging.destination.name"] == queue
    )  # fmt: skip
    assert metric.unit == "{message}"
    assert point.value == 3
    assert point.attributes["tracedjobs.task.name"] == "send_email"


def _gauge_rows() -> dict[str, list[dict[str, Any]]]:
    return {
        "workers": [
            {"id": "w-1", "hostname": "h1", "heartbeat_age": 1.5, "alive": True},
            {"id": "w-2", "hostname": "h2", "heartbeat_age": 99.0, "alive": False},
        ],
        "queue_jobs": [
            {"queue_name": "emails", "status": "todo", "jobs": 5},
            {"queue_name": "emails", "status": "failed", "jobs": 2},
        ],
        "oldest_ready": [{"queue_name": "emails", "age": 12.0}],
    }


def test_database_gauges_report_the_published_snapshot_only_while_elected(otel: Otel):
    telemetry.withdraw_gauges("test")
    for name in ("tracedjobs.workers", "tracedjobs.queue.jobs"):
        assert otel.points(name) == []
    telemetry.publish_gauges("test", telemetry.GaugeSnapshot.from_rows(_gauge_rows(), 0.0))

    workers = {
        p.attributes["state"]: (m.unit, p.value) for m, p in otel.points("tracedjobs.workers")
    }
    assert workers == {"alive": ("{worker}", 1), "stale": ("{worker}", 1)}

    ages = {p.attributes["tracedjobs.worker.id"]: (m.unit, p.attributes["host.name"], p.value)
            for m, p in otel.points("tracedjobs.worker.heartbeat.age")}  # fmt: skip
    assert set(ages) == {"w-1", "w-2"}
    assert ages["w-1"][:2] == ("s", "h1") and ages["w-1"][2] >= 1.5

    jobs = {(p.attributes["messaging.destination.name"], p.attributes["tracedjobs.job.status"]):
            (m.unit, p.value) for m, p in otel.points("tracedjobs.queue.jobs")}  # fmt: skip
    assert jobs[("emails", "todo")] == ("{job}", 5)
    assert jobs[("emails", "failed")] == ("{job}", 2)
    assert jobs[("emails", "doing")] == ("{job}", 0)  # zeros are reported, not dropped
    assert len(jobs) == len(telemetry.JOB_STATUSES)

    ((metric, point),) = otel.points("tracedjobs.queue.oldest_age")
    assert metric.unit == "s" and point.value >= 12.0

    telemetry.withdraw_gauges("someone else")  # only the owner can withdraw
    assert otel.points("tracedjobs.workers")
    telemetry.withdraw_gauges("test")
    assert otel.points("tracedjobs.workers") == []


def test_log_records_in_a_job_carry_its_ids(otel: Otel, caplog: pytest.LogCaptureFixture):
    log = logging.getLogger("tests.unit.telemetry")
    job = make_job()
    factory = logging.getLogRecordFactory()
    caplog.handler.addFilter(telemetry.LogContextFilter())
    with caplog.at_level(logging.INFO, logger="tests.unit.telemetry"):
        log.info("outside")
        with (
            telemetry.process_span(job, worker_name="w1") as span,
            telemetry.job_log_context(job, span),
        ):
            log.info("inside")
    outside, inside = caplog.records
    # A filter on the handler, not a process-wide change.
    assert logging.getLogRecordFactory() is factory
    assert (outside.job_id, outside.task_name, outside.trace_id) == ("", "", "")
    assert inside.job_id == 42
    assert inside.task_name == "send_email"
    assert inside.trace_id == span.trace_id and inside.span_id == span.span_id


def test_without_an_sdk_every_hook_is_a_cheap_no_op():
    code = textwrap.dedent(
        """
        import time
        from tracedjobs import telemetry
        assert not telemetry.metrics_enabled()
        start = time.perf_counter()
        for _ in range(1000):
            with telemetry.send_span("q", "t", 1) as send:
                send.set_job_ids([1])
            telemetry.record_sent("q", "t", 1)
        assert send.carrier.traceparent is None, send.carrier
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_task_arguments_are_recorded_only_when_asked(otel: Otel):
    job = make_job()
    job.args = {"to": "secret@example.com"}
    with telemetry.process_span(job, worker_name="w1"):
        pass
    with telemetry.process_span(job, worker_name="w1", record_args=True):
        pass
    default, asked = otel.finished("process emails")
    assert "secret@example.com" not in str(dict(default.attributes))
    assert asked.attributes["tracedjobs.job.args"] == '{"to": "secret@example.com"}'
