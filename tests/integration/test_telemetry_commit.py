"""§7: a defer inside the caller's transaction is counted when it commits, never if rolled back."""

from __future__ import annotations

import time

import psycopg

import tracedjobs
from tests.conftest import Otel, installed_otel
from tests.helpers import wait_until


def sent(otel: Otel, queue: str) -> int:
    return sum(
        int(point.value)
        for _metric, point in otel.points("messaging.client.sent.messages")
        if point.attributes["messaging.destination.name"] == queue
    )


def test_transactional_defer_is_counted_on_commit_only(app: tracedjobs.App, db_url: str) -> None:
    otel = installed_otel()

    @app.task(queue="txq")
    def job(n: int) -> None: ...

    before = sent(otel, "txq")
    with psycopg.connect(db_url) as conn:
        job.batch_defer({"n": 1}, {"n": 2}, connection=conn)
        time.sleep(0.5)  # the watcher looks every 0.1 s: nothing is counted while open
        assert sent(otel, "txq") == before
        conn.commit()
    wait_until(lambda: sent(otel, "txq") == before + 2, 10, "the committed defers counted")

    with psycopg.connect(db_url) as conn:
        job.defer(n=3, connection=conn)
        conn.rollback()
    job.defer(n=4)  # outside any transaction: counted at once
    assert sent(otel, "txq") == before + 3
    time.sleep(0.5)
    assert sent(otel, "txq") == before + 3  # the rolled-back one never is
