"""What `messaging.client.sent.messages` counts for a defer inside the caller's transaction.

Telemetry runs no thread and no query of its own, so it cannot see a psycopg commit: a
transactional defer is counted when its INSERT succeeds — an attempt to send, as the OTel
messaging conventions define the counter — and no commit watcher thread is started.
"""

from __future__ import annotations

import threading

import psycopg

import tracedjobs
from tests.conftest import Otel, installed_otel


def sent(otel: Otel, queue: str) -> int:
    return sum(
        int(point.value)
        for _metric, point in otel.points("messaging.client.sent.messages")
        if point.attributes["messaging.destination.name"] == queue
    )


def test_transactional_defer_is_counted_at_insert_without_a_thread_or_query(
    app: tracedjobs.App, db_url: str
) -> None:
    otel = installed_otel()

    @app.task(queue="txq")
    def job(n: int) -> None: ...

    before = sent(otel, "txq")
    threads = threading.active_count()
    with psycopg.connect(db_url) as conn:
        job.batch_defer({"n": 1}, {"n": 2}, connection=conn)
        assert sent(otel, "txq") == before + 2
        # Nothing else touched the caller's transaction.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.commit()
    with psycopg.connect(db_url) as conn:
        job.defer(n=3, connection=conn)
        conn.rollback()
    assert sent(otel, "txq") == before + 3  # the rolled-back attempt was counted too
    assert threading.active_count() == threads
    assert sorted(j.args["n"] for j in app.job_manager.list_jobs(queue="txq")) == [1, 2]
