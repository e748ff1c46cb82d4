"""End to end over OTLP/HTTP: `tracedjobs defer` in one process, `tracedjobs worker` in
another, both exporting to a real receiver that decodes the protobuf requests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess, run_cli, scalar, wait_until
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow

APP = "tests.apps.otel:app"
WORKER_ARGS = ("--heartbeat-interval", "0.5", "--stalled-timeout", "2", "--polling-interval", "0.5")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def defer(db_url: str, receiver: OtlpReceiver, task: str, args: str = "{}", **env: str) -> int:
    result = run_cli(db_url, "defer", "--app", APP, task, args, **receiver.env(**env))
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def wait_for_status(db_url: str, job_id: int, status: str) -> None:
    wait_until(
        lambda: scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,))
        == status,
        30,
        f"job {job_id} {status}",
    )


def start_worker(db_url: str, receiver: OtlpReceiver, tmp_path: Path, **env: str) -> WorkerProcess:
    worker = WorkerProcess(
        db_url, APP, *WORKER_ARGS, log_path=tmp_path / "worker.log", **receiver.env(**env)
    )
    worker.wait_for_output("started")
    return worker


def stop(worker: WorkerProcess) -> None:
    """SIGTERM: the worker flushes its spans, metrics and logs before exiting."""
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    worker.stop()


def process_spans(receiver: OtlpReceiver, job_id: int, count: int = 1) -> list:
    return wait_until(
        lambda: (
            spans := [
                s for s in receiver.spans_named("process default")
                if s.attributes.get("messaging.message.id") == str(job_id)
            ]
        ) and len(spans) >= count and spans,
        30,
        f"{count} process span(s) of job {job_id}",
    )  # fmt: skip


def test_one_job_gives_a_producer_span_a_linked_consumer_span_nested_spans_and_logs(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    job_id = defer(db_url, receiver, "traced", '{"label": "hello"}')
    (send,) = wait_until(lambda: receiver.spans_named("send default"), 30, "the send span")
    assert send.kind == "PRODUCER"
    assert send.resource["service.name"] == "tracedjobs-cli"
    assert send.attributes["messaging.message.id"] == str(job_id)

    worker = start_worker(db_url, receiver, tmp_path)
    try:
        wait_for_status(db_url, job_id, "succeeded")
        (process,) = process_spans(receiver, job_id)
        inner = wait_until(lambda: receiver.spans_named("inner work"), 30, "the task's span")
    finally:
        stop(worker)

    assert process.kind == "CONSUMER"
    assert process.resource["service.name"] == "tracedjobs-worker"
    assert [(li.trace_id, li.span_id) for li in process.links] == [(send.trace_id, send.span_id)]
    assert process.parent_span_id == ""
    assert process.attributes["messaging.system"] == "tracedjobs"
    assert process.attributes["messaging.destination.name"] == "default"
    assert process.attributes["tracedjobs.task.name"] == "traced"
    assert process.attributes["tracedjobs.job.attempt"] == 1
    assert process.attributes["tracedjobs.job.outcome"] == "succeeded"
    assert "label" not in str(process.attributes)  # arguments are not recorded
    # Spans of code inside the task nest under the attempt.
    assert inner[0].parent_span_id == process.span_id and inner[0].trace_id == process.trace_id
    # The attempt row stores the ids of its span.
    stored = scalar(db_url, "SELECT trace_id || '/' || span_id FROM tracedjobs_attempts "
                            "WHERE job_id = %s", (job_id,))  # fmt: skip
    assert stored == f"{process.trace_id}/{process.span_id}"

    # Log records emitted inside the job carry its trace, span, job id and task name.
    (record,) = [r for r in receiver.log_records() if r.body == "working on hello"]
    assert (record.trace_id, record.span_id) == (inner[0].trace_id, inner[0].span_id)
    assert record.attributes["job_id"] == job_id
    assert record.attributes["task_name"] == "traced"
    assert record.attributes["trace_id"] == process.trace_id


def test_trace_parent_parent_puts_the_attempt_in_the_producer_trace(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    env = {"TRACEDJOBS_TEST_TRACE_PARENT": "parent"}
    job_id = defer(db_url, receiver, "traced_async", **env)
    (send,) = wait_until(lambda: receiver.spans_named("send default"), 30, "the send span")
    worker = start_worker(db_url, receiver, tmp_path, **env)
    try:
        (process,) = process_spans(receiver, job_id)
    finally:
        stop(worker)
    assert process.trace_id == send.trace_id
    assert process.parent_span_id == send.span_id
    assert process.links == []


def test_retries_failures_deferrals_and_aborts_are_visible_on_their_attempt_spans(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    worker = start_worker(db_url, receiver, tmp_path)
    try:
        broken = defer(db_url, receiver, "broken")
        defers = defer(db_url, receiver, "defers")
        abortable = defer(db_url, receiver, "abortable")
        wait_for_status(db_url, broken, "failed")
        wait_for_status(db_url, defers, "succeeded")
        wait_for_status(db_url, abortable, "doing")
        result = run_cli(db_url, "jobs", "cancel", "--abort", str(abortable))
        assert result.returncode == 0, result.stderr
        wait_for_status(db_url, abortable, "aborted")
        broken_spans = process_spans(receiver, broken, 2)
        defers_spans = process_spans(receiver, defers, 2)
        (aborted_span,) = process_spans(receiver, abortable)
    finally:
        stop(worker)

    by_attempt = {s.attributes["tracedjobs.job.attempt"]: s for s in broken_spans}
    assert by_attempt[1].attributes["tracedjobs.job.outcome"] == "retried"
    assert by_attempt[2].attributes["tracedjobs.job.outcome"] == "failed"
    for span in by_attempt.values():
        assert span.status == "ERROR"
        assert span.attributes["error.type"] == "ValueError"
        assert [name for name, _ in span.events] == ["exception"]
        assert span.events[0][1]["exception.message"] == "broken on purpose"

    outcomes = sorted(s.attributes["tracedjobs.job.outcome"] for s in defers_spans)
    assert outcomes == ["deferred", "succeeded"]
    assert all(s.status != "ERROR" for s in defers_spans)

    assert aborted_span.attributes["tracedjobs.job.outcome"] == "aborted"
    assert aborted_span.status == "ERROR"

    consumed = {
        (p.attributes["tracedjobs.task.name"], p.attributes["tracedjobs.job.outcome"]): p.value
        for p in receiver.points_named("messaging.client.consumed.messages")
    }
    assert consumed[("broken", "retried")] == 1
    assert consumed[("broken", "failed")] == 1
    assert consumed[("defers", "deferred")] == 1
    assert consumed[("defers", "succeeded")] == 1
    assert consumed[("abortable", "aborted")] == 1


EXPECTED = {
    # name: (kind, unit, attribute keys)
    "messaging.client.sent.messages": (
        "sum", "{message}",
        {"messaging.system", "messaging.destination.name", "tracedjobs.task.name"},
    ),
    "messaging.client.consumed.messages": (
        "sum", "{message}",
        {"messaging.system", "messaging.destination.name", "tracedjobs.task.name",
         "tracedjobs.job.outcome"},
    ),
    "messaging.process.duration": (
        "histogram", "s",
        {"messaging.system", "messaging.destination.name", "tracedjobs.task.name",
         "tracedjobs.job.outcome"},
    ),
    "tracedjobs.job.queue_wait": (
        "histogram", "s",
        {"messaging.system", "messaging.destination.name", "tracedjobs.task.name"},
    ),
    "tracedjobs.workers": ("gauge", "{worker}", {"messaging.system", "state"}),
    "tracedjobs.worker.heartbeat.age": (
        "gauge", "s", {"messaging.system", "tracedjobs.worker.id", "host.name"},
    ),
    "tracedjobs.queue.jobs": (
        "gauge", "{job}",
        {"messaging.system", "messaging.destination.name", "tracedjobs.job.status"},
    ),
    "tracedjobs.queue.oldest_age": (
        "gauge", "s", {"messaging.system", "messaging.destination.name"},
    ),
}  # fmt: skip


def test_every_metric_arrives_with_its_unit_attributes_and_exemplars(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    first_id = defer(db_url, receiver, "traced")  # counted by the CLI process
    worker = start_worker(db_url, receiver, tmp_path)
    try:
        job_id = defer(db_url, receiver, "traced")
        wait_for_status(db_url, job_id, "succeeded")
        (process,) = process_spans(receiver, job_id)
        wait_until(
            lambda: all(receiver.points_named(name) for name in EXPECTED), 30, "every metric"
        )
        # The gauges are read every few seconds: wait for a snapshot taken after the jobs ended.
        wait_for_status(db_url, first_id, "succeeded")
        wait_until(
            lambda: any(
                p.attributes.get("tracedjobs.job.status") == "succeeded" and p.value == 2
                for p in receiver.points_named("tracedjobs.queue.jobs")
            ),
            30,
            "a queue gauge counting both succeeded jobs",
        )
    finally:
        stop(worker)

    for name, (kind, unit, keys) in EXPECTED.items():
        points = receiver.points_named(name)
        assert {(p.kind, p.unit) for p in points} == {(kind, unit)}, name
        assert {frozenset(p.attributes) for p in points} == {frozenset(keys)}, name

    sent = [p for p in receiver.points_named("messaging.client.sent.messages")]
    assert max(p.value for p in sent if p.resource["service.name"] == "tracedjobs-cli") >= 1
    duration = receiver.points_named("messaging.process.duration")
    assert duration[0].bounds[:3] == [0.005, 0.01, 0.025] and 3600 in duration[0].bounds
    # Exemplars link histogram points to the trace of the job that produced them.
    exemplar_traces = {t for p in duration for t in p.exemplar_trace_ids}
    assert process.trace_id in exemplar_traces

    workers = {p.attributes["state"]: p.value for p in receiver.points_named("tracedjobs.workers")}
    assert workers["alive"] == 1
    ages = receiver.points_named("tracedjobs.worker.heartbeat.age")
    worker_id = scalar(db_url, "SELECT worker_id FROM tracedjobs_attempts WHERE job_id = %s",
                       (job_id,))  # fmt: skip
    assert {p.attributes["tracedjobs.worker.id"] for p in ages} == {str(worker_id)}
    counts = [
        (p.attributes["tracedjobs.job.status"], p.value)
        for p in receiver.points_named("tracedjobs.queue.jobs")
    ]
    assert max(v for status, v in counts if status == "succeeded") == 2


def test_otlp_over_grpc_carries_the_same_trace_and_metrics(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    grpc_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.start_grpc(),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    job_id = defer(db_url, receiver, "traced", '{"label": "grpc"}', **grpc_env)
    (send,) = wait_until(lambda: receiver.spans_named("send default"), 30, "the send span")
    worker = start_worker(db_url, receiver, tmp_path, **grpc_env)
    try:
        wait_for_status(db_url, job_id, "succeeded")
        (process,) = process_spans(receiver, job_id)
        wait_until(
            lambda: receiver.points_named("messaging.client.consumed.messages"),
            30,
            "the consumed counter over gRPC",
        )
    finally:
        stop(worker)
    assert send.kind == "PRODUCER" and process.kind == "CONSUMER"
    assert [(li.trace_id, li.span_id) for li in process.links] == [(send.trace_id, send.span_id)]
    (point,) = [
        p for p in receiver.points_named("messaging.client.consumed.messages")
        if p.attributes.get("tracedjobs.job.outcome") == "succeeded"
    ][-1:]
    assert point.value >= 1
