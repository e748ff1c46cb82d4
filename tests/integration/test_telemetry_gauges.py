"""The gauge election (advisory lock) and the database snapshot behind the gauges."""

from __future__ import annotations

import uuid

import anyio
import psycopg
import pytest

import tracedjobs
from tracedjobs import store, telemetry


async def _connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def test_one_session_holds_the_gauge_lock_until_it_closes(app: tracedjobs.App, db_url: str):
    async def main() -> None:
        first, second = await _connect(db_url), await _connect(db_url)
        try:
            assert await store.try_gauge_lock(first)
            assert not await store.try_gauge_lock(second)
            assert await store.try_gauge_lock(first)  # re-entrant for its holder
            await first.close()
            # The server releases the lock when the closed session's backend exits.
            with anyio.fail_after(10):
                while not await store.try_gauge_lock(second):
                    await anyio.sleep(0.05)
        finally:
            await first.close()
            await second.close()

    anyio.run(main)


def test_the_snapshot_uses_heartbeat_cutoff_and_counts_ready_jobs_only_for_oldest_age(
    app: tracedjobs.App, db_url: str, conn: psycopg.Connection
):
    alive, stale = str(uuid.uuid4()), str(uuid.uuid4())
    conn.execute(
        "INSERT INTO tracedjobs_workers (id, name, hostname, pid, concurrency, last_heartbeat_at) "
        "VALUES (%s, 'a', 'host-a', 1, 1, now() - interval '1 second'), "
        "       (%s, 's', 'host-s', 2, 1, now() - interval '60 seconds')",
        (alive, stale),
    )
    conn.execute(
        "INSERT INTO tracedjobs_jobs (queue_name, task_name, status, created_at, scheduled_at) "
        "VALUES ('mail', 't', 'todo', now() - interval '100 seconds', NULL), "
        "       ('mail', 't', 'todo', now() - interval '500 seconds', now() + interval '1 hour'), "
        "       ('mail', 't', 'failed', now(), NULL), "
        "       ('later', 't', 'todo', now() - interval '900 seconds', now() + interval '1 hour')"
    )

    async def main() -> telemetry.GaugeSnapshot:
        c = await _connect(db_url)
        async with c:
            rows = await store.gauge_snapshot(c, 30.0)
        return telemetry.GaugeSnapshot.from_rows(rows, 0.0)

    snapshot = anyio.run(main)
    assert (snapshot.workers_alive, snapshot.workers_stale) == (1, 1)
    ages = {worker_id: (host, age) for worker_id, host, age in snapshot.heartbeat_ages}
    assert ages[alive][0] == "host-a" and 0.5 < ages[alive][1] < 30
    assert ages[stale][0] == "host-s" and ages[stale][1] >= 60
    assert snapshot.queue_jobs[("mail", "todo")] == 2
    assert snapshot.queue_jobs[("mail", "failed")] == 1
    assert snapshot.queue_jobs[("later", "succeeded")] == 0
    # The scheduled job is not ready: the oldest *ready* job waited ~100 s, not 500.
    assert snapshot.oldest_age["mail"] == pytest.approx(100, abs=20)
    assert snapshot.oldest_age["later"] == 0.0
