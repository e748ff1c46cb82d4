"""The worker's own database port: claim, finish, heartbeat, rescue, LISTEN.

The worker talks to a :class:`WorkerStore`; :class:`PostgresStore` is the real one. Its
connections all come from the connector: a small pool of its own for claims and the side
loops, and dedicated connections for heartbeats (so a busy pool can never delay them and
make peers declare a healthy worker dead), for LISTEN and for the gauge election. The last
two need a server session of their own, so they come from ``connect_session_async`` (which
may bypass a transaction pooler that the others go through).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import anyio
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tracedjobs import sql
from tracedjobs.connector import PsycopgConnector
from tracedjobs.jobs import AttemptResult, Job

JOBS_CHANNEL = "tracedjobs_jobs"
ABORT_CHANNEL = "tracedjobs_abort"


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    id: str
    name: str
    hostname: str
    pid: int
    queues: list[str] | None
    concurrency: int


@dataclasses.dataclass
class Batch:
    """What one finish-and-claim round trip did."""

    recorded: set[int]  # ids of the jobs whose result was written
    claimed: list[dict[str, Any]]  # rows of the jobs claimed
    next_in: float | None  # seconds until the next scheduled job (None: none, or not asked)
    more: bool = False  # jobs may be left ready (False: the claim took every ready job)


class WorkerStore(Protocol):
    """What the worker needs from the database (a fault-injecting store can stand in)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def register(self, worker: WorkerInfo) -> None: ...
    async def unregister(self, worker_id: str) -> None: ...
    async def heartbeat(self, worker_id: str) -> bool: ...
    async def finish_and_claim(
        self,
        finished: Sequence[AttemptResult],
        *,
        worker: WorkerInfo,
        limit: int,
        delete_statuses: Sequence[str] = (),
    ) -> Batch: ...
    async def release_jobs(
        self, jobs: Sequence[tuple[int, int]], *, worker_id: str
    ) -> set[int]: ...
    async def claimed_by(self, jobs: Sequence[tuple[int, int]], *, worker_id: str) -> set[int]: ...
    async def fail_unrecordable(self, result: AttemptResult, message: str) -> bool: ...
    async def aborting_job_ids(self, worker_id: str) -> set[int]: ...
    async def rescue_dead_workers(
        self,
        seconds: float,
        decide: Callable[[Job], AttemptResult],
        *,
        exclude: str | None = None,
    ) -> list[tuple[Job, AttemptResult]]: ...
    async def prune_dead_workers(self, seconds: float) -> int: ...
    async def defer_periodic(self, params: dict[str, Any]) -> int | None: ...
    async def prune_periodic_ticks(self) -> None: ...
    async def prune_finished(self, seconds: float, limit: int) -> int: ...
    def listen(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[psycopg.Notify]]: ...
    async def connect_session(self) -> psycopg.AsyncConnection[Any]: ...


def _floats(values: Sequence[float | None]) -> list[float | None]:
    # Sent in binary (see finish_jobs), a list must hold one type: 5 and 2.5 become floats.
    return [None if v is None else float(v) for v in values]


def finish_params(results: Sequence[AttemptResult]) -> dict[str, Any]:
    """The arrays of ``finish_jobs``. Most travel in binary (``%(name)b``): psycopg's text
    arrays escape every element with a regular expression, a third of a batch's cost."""
    return {
        "job_id": [r.job_id for r in results],
        "attempt_id": [r.attempt_id for r in results],
        "status": [str(r.status) for r in results],
        "outcome": [str(r.outcome) for r in results],
        "event": [r.event for r in results],
        "inc": [1 if r.increment_attempts else 0 for r in results],
        "retry_in": _floats([r.retry_in for r in results]),
        "retry_at": [r.retry_at for r in results],
        "priority": [r.priority for r in results],
        "queue": [r.queue for r in results],
        "lock": [r.lock for r in results],
        "duration": _floats([r.duration for r in results]),
        "error_type": [r.error_type for r in results],
        "error_message": [r.error_message for r in results],
        "traceback": [r.traceback for r in results],
        "trace_id": [r.trace_id for r in results],
        "span_id": [r.span_id for r in results],
    }


def _claim_params(worker: WorkerInfo, limit: int) -> dict[str, Any]:
    return {
        "worker_id": worker.id,
        "worker_name": worker.name,
        "queues": list(worker.queues) if worker.queues else None,
        "limit": limit,
    }


def _claimed(recorded: set[int], rows: list[dict[str, Any]]) -> Batch:
    """The Batch of ``claim_jobs``' rows: one per claimed job, or one of NULL job columns
    when none was; each carries ``more`` and ``next_in``."""
    first = rows[0]
    claimed = rows if first["id"] is not None else []
    return Batch(recorded, claimed, first["next_in"], first["more"])


class PostgresStore:
    """:class:`WorkerStore` on PostgreSQL, through the app's connector."""

    def __init__(self, connector: PsycopgConnector, *, name: str, pool_size: int = 3) -> None:
        self.connector = connector
        self._name = name
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Any] | None = None
        self._beat: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        # A first direct connection fails fast with the server's own reason.
        conn = await self.connector.connect_async()
        await conn.close()
        self._pool = self.connector.create_pool_async(
            min_size=1, max_size=self._pool_size, name=self._name
        )
        await self._pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self._beat is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._beat.close()
            self._beat = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=5)

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        assert self._pool is not None, "the store is not open"
        return self._pool

    async def connect_session(self) -> psycopg.AsyncConnection[Any]:
        """A dedicated connection with a session of its own (the gauge exporter's advisory
        lock lives as long as it)."""
        return await self.connector.connect_session_async()

    # -- registration and heartbeats (a dedicated connection) ---------------------------

    async def _beat_conn(self) -> psycopg.AsyncConnection[Any]:
        if self._beat is None or self._beat.closed or self._beat.broken:
            self._beat = await self.connector.connect_async()
        return self._beat

    async def _on_beat_conn(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        conn = await self._beat_conn()
        try:
            cur = await conn.execute(sql.query(name), params)
            return await cur.fetchall() if cur.description else []
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
            # Reconnect on the next beat.
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
            self._beat = None
            raise

    async def register(self, worker: WorkerInfo) -> None:
        await self._on_beat_conn("register_worker", dataclasses.asdict(worker))

    async def unregister(self, worker_id: str) -> None:
        await self._on_beat_conn("unregister_worker", {"id": worker_id})

    async def heartbeat(self, worker_id: str) -> bool:
        """Bump the heartbeat; False if the row is gone (a peer declared us dead)."""
        return bool(await self._on_beat_conn("heartbeat", {"id": worker_id}))

    # -- the fetch loop's round trip -------------------------------------------------------

    async def finish_and_claim(
        self,
        finished: Sequence[AttemptResult],
        *,
        worker: WorkerInfo,
        limit: int,
        delete_statuses: Sequence[str] = (),
    ) -> Batch:
        """Record finished attempts, then claim up to ``limit`` jobs: one transaction, one
        commit, one round trip. Several statements are pipelined between an explicit BEGIN
        and COMMIT; a lone one (results only, or a claim only) is sent as it is, a
        transaction of its own, at a third of the pipeline's cost to this process.
        A refused statement rolls everything back and raises."""
        delete = bool(finished and delete_statuses)
        several = bool(finished) + delete + (limit > 0) > 1
        async with self.pool.connection() as conn:
            try:
                async with conn.pipeline() if several else contextlib.nullcontext():
                    if several:
                        await conn.execute("BEGIN")
                    if finished:
                        done = await conn.execute(sql.query("finish_jobs"), finish_params(finished))
                        if delete:
                            await conn.execute(
                                sql.query("delete_finished_jobs"),
                                {
                                    "ids": [r.job_id for r in finished],
                                    "statuses": list(delete_statuses),
                                },
                            )
                    if limit > 0:
                        claim = conn.cursor(row_factory=dict_row)
                        await claim.execute(sql.query("claim_jobs"), _claim_params(worker, limit))
                    if several:
                        await conn.execute("COMMIT")
                recorded = {row[0] for row in await done.fetchall()} if finished else set()
                if limit > 0:
                    return _claimed(recorded, await claim.fetchall())
                return Batch(recorded, [], None, False)
            except BaseException:
                if several:  # a lone statement was a transaction of its own
                    await _rollback(conn)
                raise

    async def release_jobs(self, jobs: Sequence[tuple[int, int]], *, worker_id: str) -> set[int]:
        """Hand claimed jobs that never started ((job id, attempt id) pairs) back to the
        queue; returns the ids of those handed back."""
        return await self._claims("release_jobs", jobs, worker_id)

    async def claimed_by(self, jobs: Sequence[tuple[int, int]], *, worker_id: str) -> set[int]:
        """The ids of those claims ((job id, attempt id) pairs) still held by the worker."""
        return await self._claims("claimed_by", jobs, worker_id)

    async def _claims(self, name: str, jobs: Sequence[tuple[int, int]], worker_id: str) -> set[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.query(name),
                {
                    "ids": [job_id for job_id, _ in jobs],
                    "attempt_ids": [attempt_id for _, attempt_id in jobs],
                    "worker_id": worker_id,
                },
            )
            return {row[0] for row in await cur.fetchall()}

    async def fail_unrecordable(self, result: AttemptResult, message: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.query("fail_unrecordable"),
                {
                    "job_id": result.job_id,
                    "attempt_id": result.attempt_id,
                    "error_type": "tracedjobs.ResultRefused",
                    "error_message": message,
                },
            )
            return await cur.fetchone() is not None

    # -- side loops (the pool) -------------------------------------------------------------

    async def aborting_job_ids(self, worker_id: str) -> set[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.query("aborting_jobs_of_worker"), {"id": worker_id})
            return {row[0] for row in await cur.fetchall()}

    async def rescue_dead_workers(
        self,
        seconds: float,
        decide: Callable[[Job], AttemptResult],
        *,
        exclude: str | None = None,
    ) -> list[tuple[Job, AttemptResult]]:
        """Rescue the running jobs of every worker whose heartbeat is older than ``seconds``.

        Per dead worker, one transaction: delete its row (the claim — of two rescuers only
        one gets it), mark its running attempts ``lost`` and re-run or fail each job as
        ``decide`` says. Jobs left running with no worker row at all (for longer than
        ``seconds``) are rescued the same way. ``exclude`` is the calling worker's id: a
        worker resuming from a pause never rescues itself (its next heartbeat revives it).
        """
        rescued: list[tuple[Job, AttemptResult]] = []
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.query("dead_workers"), {"seconds": seconds})
            dead = [row[0] for row in await cur.fetchall() if str(row[0]) != exclude]
            for worker_id in dead:
                async with conn.transaction():
                    cur = await conn.execute(
                        sql.query("claim_dead_worker"), {"id": worker_id, "seconds": seconds}
                    )
                    if await cur.fetchone() is None:
                        continue  # another rescuer got it, or it came back to life
                    rescued += await _rescue_locked(
                        conn, "lock_jobs_of_worker", worker_id, seconds, decide
                    )
            async with conn.transaction():
                rescued += await _rescue_locked(conn, "lock_orphan_jobs", None, seconds, decide)
        return rescued

    async def prune_dead_workers(self, seconds: float) -> int:
        """Delete the rows of workers silent for ``seconds`` without rescuing their jobs."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.query("prune_dead_workers"), {"seconds": seconds})
            return len(await cur.fetchall())

    async def defer_periodic(self, params: dict[str, Any]) -> int | None:
        """Defer one tick of a periodic task; the new job id, or None if taken/skipped."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql.query("defer_periodic_job"), params)
            row = await cur.fetchone()
            return row["job_id"] if row else None

    async def prune_periodic_ticks(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(sql.query("prune_periodic_ticks"))

    async def prune_finished(self, seconds: float, limit: int) -> int:
        """Delete up to ``limit`` jobs that ended well more than ``seconds`` ago."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.query("prune_finished_batch"), {"seconds": float(seconds), "limit": limit}
            )
            return len(await cur.fetchall())

    # -- LISTEN (a dedicated connection) ---------------------------------------------------

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[psycopg.Notify]]:
        """LISTEN to new-job and abort notifications on a session connection of its own."""
        conn = await self.connector.connect_session_async()
        try:
            await conn.execute(f"LISTEN {JOBS_CHANNEL}")
            await conn.execute(f"LISTEN {ABORT_CHANNEL}")
            yield conn.notifies()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error, OSError):
                await conn.close()


async def _rollback(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error, OSError):
        await conn.rollback()


async def _rescue_locked(
    conn: psycopg.AsyncConnection[Any],
    query_name: str,
    worker_id: Any,
    seconds: float,
    decide: Callable[[Job], AttemptResult],
) -> list[tuple[Job, AttemptResult]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql.query(query_name), {"id": worker_id, "seconds": seconds})
    jobs = [Job.from_row(row) for row in await cur.fetchall()]
    if not jobs:
        return []
    results = [decide(job) for job in jobs]
    done = await conn.execute(sql.query("finish_jobs"), finish_params(results))
    recorded = {row[0] for row in await done.fetchall()}
    return [(j, r) for j, r in zip(jobs, results, strict=True) if j.id in recorded]


# -- the database-wide gauges (one elected worker, a dedicated session) ---------------------


async def try_gauge_lock(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Try to become the gauge exporter; the lock lives as long as ``conn``'s session."""
    cur = await conn.execute(sql.query("try_gauge_lock"))
    row = await cur.fetchone()
    return bool(row and row[0])


async def gauge_snapshot(
    conn: psycopg.AsyncConnection[Any], seconds_since_heartbeat: float
) -> dict[str, list[dict[str, Any]]]:
    """Workers (with liveness), job counts by queue and status, oldest ready job per queue."""
    result: dict[str, list[dict[str, Any]]] = {}
    params = {"seconds": float(seconds_since_heartbeat)}
    for key, name, args in (
        ("workers", "gauge_workers", params),
        ("queue_jobs", "gauge_queue_jobs", None),
        ("oldest_ready", "gauge_oldest_ready", None),
    ):
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.query(name), args)
        result[key] = await cur.fetchall()
    return result
