"""Election of the one worker that exports the database-wide gauges, and its refresh loop.

Every worker runs :func:`export_loop`. Each tries a PostgreSQL advisory lock on a dedicated
connection; the one that gets it keeps the connection (and so the lock) open, reads a
snapshot of workers and queues every few seconds and hands it to ``telemetry``, whose gauge
callbacks report it. When that worker stops or dies, its session ends, the lock is freed,
and another worker's next try takes over. Nothing runs while no metrics SDK is installed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import psycopg

from tracedjobs import store, supervisor, telemetry

if TYPE_CHECKING:
    from tracedjobs.worker import Worker

logger = logging.getLogger("tracedjobs.gauges")

REFRESH_SECONDS = 5.0


def refresh_interval(worker: Worker) -> float:
    """Every few seconds; faster when heartbeats are (tests use sub-second heartbeats)."""
    return max(0.1, min(REFRESH_SECONDS, worker.update_heartbeat_interval))


async def export_loop(worker: Worker) -> None:
    await supervisor.forever("gauge exporter", lambda health: _export(worker, health))


async def _export(worker: Worker, health: supervisor.Health) -> None:
    interval = refresh_interval(worker)
    while not telemetry.metrics_enabled():
        await anyio.sleep(interval)
    conn = await worker.store.connect_session()
    elected = False
    try:
        while True:
            if not elected:
                elected = await store.try_gauge_lock(conn)
                if elected:
                    logger.info("worker %s now exports the database-wide gauges", worker.name)
            if elected:
                rows = await store.gauge_snapshot(conn, worker.stalled_worker_timeout)
                telemetry.publish_gauges(
                    worker, telemetry.GaugeSnapshot.from_rows(rows, time.monotonic())
                )
            health.ok()
            await anyio.sleep(interval)
    finally:
        # The lock goes with the session: let another worker export.
        telemetry.withdraw_gauges(worker)
        with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error, OSError):
            await conn.close()
