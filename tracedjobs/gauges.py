"""Election of the one worker that exports the database-wide gauges, and its refresh loop.

Every worker runs :func:`export_loop`. Each tries a PostgreSQL advisory lock on a dedicated
connection; the one that gets it keeps the connection (and so the lock) open, reads a
snapshot of workers and queues every few seconds and hands it to ``telemetry``, whose gauge
callbacks report it. When that worker stops or dies, its session ends, the lock is freed,
and another worker's next try takes over. Nothing runs while no metrics SDK is installed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import psycopg

from tracedjobs import telemetry

if TYPE_CHECKING:
    from tracedjobs.worker import Worker

logger = logging.getLogger("tracedjobs.gauges")

REFRESH_SECONDS = 5.0


def refresh_interval(worker: Worker) -> float:
    """Every few seconds; faster when heartbeats are (tests use sub-second heartbeats)."""
    return max(0.1, min(REFRESH_SECONDS, worker.update_heartbeat_interval))


async def export_loop(worker: Worker) -> None:
    interval = refresh_interval(worker)
    conn: psycopg.AsyncConnection[Any] | None = None
    elected = False
    try:
        while True:
            if not telemetry.metrics_enabled():
                await anyio.sleep(interval)
                continue
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        worker.app.connector.url, autocommit=True
                    )
                    elected = False
                if not elected:
                    elected = await worker.manager.try_gauge_lock(conn)
                    if elected:
                        logger.info("worker %s now exports the database-wide gauges", worker.name)
                if elected:
                    rows = await worker.manager.gauge_snapshot(conn, worker.stalled_worker_timeout)
                    telemetry.publish_gauges(
                        worker, telemetry.GaugeSnapshot.from_rows(rows, time.monotonic())
                    )
            except (psycopg.Error, OSError) as exc:
                # The lock went with the session (or never came): let another worker export.
                telemetry.withdraw_gauges(worker)
                elected = False
                logger.debug("gauge refresh failed (%s)", exc)
                await _close(conn)
                conn = None
            await anyio.sleep(interval)
    finally:
        telemetry.withdraw_gauges(worker)
        with anyio.CancelScope(shield=True):
            await _close(conn)


async def _close(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is not None and not conn.closed:
        try:
            await conn.close()
        except (psycopg.Error, OSError):
            pass
