"""One trace from the web request that enqueued a job to the attempt that ran it (§11).

The example apps in examples/webapp are driven through their test clients with the
standard OpenTelemetry instrumentations and the SDK's in-memory span exporter; the jobs
then run in an in-process worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import tracedjobs
from examples.webapp import tasks as webapp_tasks
from tests.conftest import installed_otel
from tests.helpers import query, scalar
from tracedjobs.manager import JobManager


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test (the global provider can be set once per process)."""
    exporter = installed_otel().spans
    exporter.clear()
    yield exporter


@pytest.fixture
def jobs(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tracedjobs.App]:
    """The example's App, pointed at this test's database."""
    app = webapp_tasks.app
    connector = tracedjobs.PsycopgConnector(conninfo=db_url)
    monkeypatch.setattr(app, "connector", connector)
    monkeypatch.setattr(app, "job_manager", JobManager(connector))
    yield app
    connector.close()


def _one(spans: list[ReadableSpan], name: str | None = None, kind: SpanKind | None = None) -> Any:
    found = [
        s for s in spans if (name is None or s.name == name) and (kind is None or s.kind == kind)
    ]
    assert len(found) == 1, f"expected one span {name} {kind}, got {[s.name for s in spans]}"
    return found[0]


def _run_jobs(app: tracedjobs.App) -> None:
    app.run_worker(
        wait=False,
        install_signal_handlers=False,
        update_heartbeat_interval=0.5,
        stalled_worker_timeout=5.0,
    )


def _traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _post_order(quantity: int = 1) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from examples.webapp.fastapi_app import api

    with TestClient(api) as client:
        response = client.post("/orders", json={"item": "book", "quantity": quantity})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_fastapi_request_span_is_parent_of_send_span_and_job_stores_its_context(
    jobs: tracedjobs.App, spans: InMemorySpanExporter, db_url: str
) -> None:
    body = _post_order()

    finished = spans.get_finished_spans()
    server = _one(finished, kind=SpanKind.SERVER)
    producer = _one(finished, "send orders", SpanKind.PRODUCER)
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert producer.context.trace_id == server.context.trace_id
    assert producer.attributes["messaging.message.id"] == str(body["job_id"])

    # The job row carries the producer span's W3C context, committed with the order.
    stored = query(
        db_url, "SELECT traceparent, queue_name FROM tracedjobs_jobs WHERE id = %s", (body["job_id"],)
    )
    assert stored == [(_traceparent(producer), "orders")]
    assert scalar(db_url, "SELECT count(*) FROM webapp_orders WHERE id = %s", (body["order_id"],))


def test_worker_attempt_links_to_the_request_producer_span(
    jobs: tracedjobs.App, spans: InMemorySpanExporter, db_url: str
) -> None:
    body = _post_order()
    producer = _one(spans.get_finished_spans(), "send orders", SpanKind.PRODUCER)
    spans.clear()

    _run_jobs(jobs)

    assert scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (body["job_id"],)) == (
        "succeeded"
    )
    consumer = _one(spans.get_finished_spans(), "process orders", SpanKind.CONSUMER)
    # Default (messaging conventions): a new trace, linked to the producer.
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]
    assert consumer.links[0].context.trace_id == producer.context.trace_id
    assert consumer.parent is None
    assert consumer.attributes["messaging.message.id"] == str(body["job_id"])


def test_with_trace_parent_parent_the_attempt_joins_the_request_trace(
    jobs: tracedjobs.App,
    spans: InMemorySpanExporter,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "trace_parent", "parent")
    body = _post_order()
    finished = spans.get_finished_spans()
    server = _one(finished, kind=SpanKind.SERVER)
    producer = _one(finished, "send orders", SpanKind.PRODUCER)
    spans.clear()

    _run_jobs(jobs)

    consumer = _one(spans.get_finished_spans(), "process orders", SpanKind.CONSUMER)
    assert consumer.attributes["messaging.message.id"] == str(body["job_id"])
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == server.context.trace_id


def test_failing_order_job_records_the_error_in_the_request_trace(
    jobs: tracedjobs.App,
    spans: InMemorySpanExporter,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "trace_parent", "parent")
    body = _post_order(quantity=webapp_tasks.STOCK + 1)
    server = _one(spans.get_finished_spans(), kind=SpanKind.SERVER)
    spans.clear()

    _run_jobs(jobs)

    attempts = [s for s in spans.get_finished_spans() if s.name == "process orders"]
    assert len(attempts) == 3  # retry=2: three attempts, all in the request's trace
    assert {s.context.trace_id for s in attempts} == {server.context.trace_id}
    assert all(s.attributes["error.type"].endswith("OutOfStock") for s in attempts)
    assert scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (body["job_id"],)) == (
        "failed"
    )


def test_flask_request_span_is_parent_of_send_span(
    jobs: tracedjobs.App, spans: InMemorySpanExporter, db_url: str
) -> None:
    from examples.webapp.flask_app import create_app

    client = create_app().test_client()
    response = client.post("/signup", json={"user_id": 7})
    assert response.status_code == 200, response.text

    finished = spans.get_finished_spans()
    server = _one(finished, kind=SpanKind.SERVER)
    producer = _one(finished, "send emails", SpanKind.PRODUCER)
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    stored = scalar(
        db_url, "SELECT traceparent FROM tracedjobs_jobs WHERE id = %s", (response.json["job_id"],)
    )
    assert stored == _traceparent(producer)


def test_flask_order_and_its_job_commit_in_one_transaction(
    jobs: tracedjobs.App, spans: InMemorySpanExporter, db_url: str
) -> None:
    from examples.webapp.flask_app import create_app

    client = create_app().test_client()
    response = client.post("/orders", json={"item": "pen", "quantity": 2})
    assert response.status_code == 200, response.text
    order_id, job_id = response.json["order_id"], response.json["job_id"]
    rows = query(
        db_url,
        "SELECT o.id, j.args->>'order_id', j.task_name FROM webapp_orders o "
        "JOIN tracedjobs_jobs j ON j.id = %s",
        (job_id,),
    )
    assert rows == [(order_id, str(order_id), "examples.webapp.tasks.process_order")]
