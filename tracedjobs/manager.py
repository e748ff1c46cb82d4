"""JobManager: every query tracedjobs runs, behind sync methods and their ``_async`` twins.

Each pair builds its parameters and reads its rows with shared helpers; only the execute
call differs.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from tracedjobs import migrations, sql
from tracedjobs.connector import PsycopgConnector
from tracedjobs.exceptions import AlreadyEnqueued, InvalidJobState, JobNotFound
from tracedjobs.jobs import Attempt, AttemptResult, Event, Job, Status

if TYPE_CHECKING:
    from tracedjobs.tasks import JobSpec

DEFAULT_STALLED_SECONDS = 30.0


def _defer_params(specs: Sequence[JobSpec]) -> dict[str, Any]:
    return {
        "queue_name": [s.queue for s in specs],
        "task_name": [s.task_name for s in specs],
        "priority": [s.priority for s in specs],
        "lock": [s.lock for s in specs],
        "queueing_lock": [s.queueing_lock for s in specs],
        "args": [s.args_json for s in specs],
        "scheduled_at": [s.scheduled_at for s in specs],
        "traceparent": [s.traceparent for s in specs],
        "tracestate": [s.tracestate for s in specs],
    }


def _already_enqueued(specs: Sequence[JobSpec], exc: Exception) -> AlreadyEnqueued:
    locks = sorted({s.queueing_lock for s in specs if s.queueing_lock})
    return AlreadyEnqueued(
        f"a job with queueing lock {', '.join(map(repr, locks))} is already waiting in todo; "
        "nothing was deferred"
    )


def finish_params(results: Sequence[AttemptResult]) -> dict[str, Any]:
    return {
        "job_id": [r.job_id for r in results],
        "attempt_id": [r.attempt_id for r in results],
        "status": [str(r.status) for r in results],
        "outcome": [str(r.outcome) for r in results],
        "event": [r.event for r in results],
        "inc": [1 if r.increment_attempts else 0 for r in results],
        "retry_in": [r.retry_in for r in results],
        "retry_at": [r.retry_at for r in results],
        "priority": [r.priority for r in results],
        "queue": [r.queue for r in results],
        "lock": [r.lock for r in results],
        "duration": [r.duration for r in results],
        "error_type": [r.error_type for r in results],
        "error_message": [r.error_message for r in results],
        "traceback": [r.traceback for r in results],
        "trace_id": [r.trace_id for r in results],
        "span_id": [r.span_id for r in results],
    }


def _list_params(
    status: str | Status | None,
    queue: str | None,
    task_name: str | None,
    lock: str | None,
    limit: int,
) -> dict[str, Any]:
    if status is not None:
        status = Status(str(status))  # raises ValueError on an unknown status
    return {
        "status": str(status) if status is not None else None,
        "queue": queue,
        "task_name": task_name,
        "lock": lock,
        "limit": limit,
    }


def _stalled_query(seconds_since_heartbeat: float, nb_seconds: float | None) -> tuple[str, float]:
    if nb_seconds is not None:
        warnings.warn(
            "get_stalled_jobs(nb_seconds=...) is deprecated: it selects jobs by time spent "
            "in doing and may retry jobs that are still running; use seconds_since_heartbeat",
            DeprecationWarning,
            stacklevel=3,
        )
        return sql.query("get_stalled_jobs_by_started"), float(nb_seconds)
    return sql.query("get_stalled_jobs"), float(seconds_since_heartbeat)


def _with_history(job: Job, events: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> Job:
    job.events = [Event(**e) for e in events]
    job.attempt_records = [Attempt.from_row(a) for a in attempts]
    return job


_RETRYABLE_BY_HAND = (Status.FAILED,)


def _with_filter(name: str, where: Any) -> psycopg.sql.Composed:
    """A named query with its ``{filter}`` slot filled by a composed WHERE fragment."""
    return psycopg.sql.SQL(sql.query(name)).format(filter=where)


def _check_retryable(row: dict[str, Any] | None, job_id: int, allowed: Sequence[Status]) -> Job:
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    job = Job.from_row(row)
    if job.status not in allowed:
        raise InvalidJobState(
            f"job {job_id} is {job.status}, not {' or '.join(map(str, allowed))}: "
            "only failed jobs can be retried"
        )
    return job


def _requeue_params(
    job: Job,
    retry_at: datetime.datetime | None,
    priority: int | None,
    queue: str | None,
    lock: str | None,
) -> dict[str, Any]:
    return {
        "id": job.id,
        "attempt_id": job.attempt_id,
        "was_running": job.status in (Status.DOING, Status.ABORTING),
        "retry_at": retry_at,
        "priority": priority,
        "queue": queue,
        "lock": lock,
    }


class JobManager:
    """Reads and changes jobs. Available as ``app.job_manager``."""

    def __init__(self, connector: PsycopgConnector) -> None:
        self.connector = connector

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        with self.connector.connection() as conn:
            return migrations.migrate(conn)

    def check_schema(self) -> int:
        with self.connector.connection() as conn:
            return migrations.check(conn)

    def schema_version(self) -> int:
        with self.connector.connection() as conn:
            return migrations.current_version(conn)

    # -- defer -------------------------------------------------------------------------

    def defer_jobs(self, specs: Sequence[JobSpec], *, connection: Any = None) -> list[int]:
        try:
            rows = self.connector.execute(
                sql.query("defer_jobs"), _defer_params(specs), conn=connection
            )
        except pg_errors.UniqueViolation as exc:
            raise _already_enqueued(specs, exc) from None
        return [r["id"] for r in rows]

    async def defer_jobs_async(
        self, specs: Sequence[JobSpec], *, connection: Any = None
    ) -> list[int]:
        try:
            rows = await self.connector.execute_async(
                sql.query("defer_jobs"), _defer_params(specs), conn=connection
            )
        except pg_errors.UniqueViolation as exc:
            raise _already_enqueued(specs, exc) from None
        return [r["id"] for r in rows]

    def count_existing(self, job_ids: Sequence[int]) -> int:
        """How many of these jobs exist (committed), e.g. after a caller's transaction."""
        rows = self.connector.execute(sql.query("count_jobs"), {"ids": list(job_ids)})
        return int(rows[0]["n"])

    def count_unfinished(self, job_ids: Sequence[int]) -> int:
        rows = self.connector.execute(sql.query("count_unfinished_jobs"), {"ids": list(job_ids)})
        return int(rows[0]["n"])

    # -- reading -----------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        """The job with its events and attempt records; raises JobNotFound."""
        with self.connector.connection() as conn:
            rows = self.connector.execute(sql.query("get_job"), {"id": job_id}, conn=conn)
            if not rows:
                raise JobNotFound(f"no job with id {job_id}")
            events = self.connector.execute(sql.query("job_events"), {"id": job_id}, conn=conn)
            attempts = self.connector.execute(sql.query("job_attempts"), {"id": job_id}, conn=conn)
        return _with_history(Job.from_row(rows[0]), events, attempts)

    async def get_job_async(self, job_id: int) -> Job:
        async with self.connector.connection_async() as conn:
            rows = await self.connector.execute_async(
                sql.query("get_job"), {"id": job_id}, conn=conn
            )
            if not rows:
                raise JobNotFound(f"no job with id {job_id}")
            events = await self.connector.execute_async(
                sql.query("job_events"), {"id": job_id}, conn=conn
            )
            attempts = await self.connector.execute_async(
                sql.query("job_attempts"), {"id": job_id}, conn=conn
            )
        return _with_history(Job.from_row(rows[0]), events, attempts)

    def get_job_status(self, job_id: int) -> Status:
        rows = self.connector.execute(sql.query("get_job_status"), {"id": job_id})
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return Status(rows[0]["status"])

    async def get_job_status_async(self, job_id: int) -> Status:
        rows = await self.connector.execute_async(sql.query("get_job_status"), {"id": job_id})
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return Status(rows[0]["status"])

    def list_jobs(
        self,
        *,
        status: str | Status | None = None,
        queue: str | None = None,
        task_name: str | None = None,
        lock: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs matching the filters, newest first."""
        params = _list_params(status, queue, task_name, lock, limit)
        return [Job.from_row(r) for r in self.connector.execute(sql.query("list_jobs"), params)]

    async def list_jobs_async(
        self,
        *,
        status: str | Status | None = None,
        queue: str | None = None,
        task_name: str | None = None,
        lock: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        params = _list_params(status, queue, task_name, lock, limit)
        rows = await self.connector.execute_async(sql.query("list_jobs"), params)
        return [Job.from_row(r) for r in rows]

    # -- liveness ----------------------------------------------------------------------

    def heartbeat_cutoff(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> datetime.datetime:
        """The instant before which a worker heartbeat counts as stale (database clock).

        Every liveness decision uses the same SQL function, ``tracedjobs_heartbeat_cutoff``.
        """
        rows = self.connector.execute(
            sql.query("heartbeat_cutoff"), {"seconds": float(seconds_since_heartbeat)}
        )
        return next(iter(rows[0].values()))

    async def heartbeat_cutoff_async(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> datetime.datetime:
        rows = await self.connector.execute_async(
            sql.query("heartbeat_cutoff"), {"seconds": float(seconds_since_heartbeat)}
        )
        return next(iter(rows[0].values()))

    async def get_stalled_jobs(
        self,
        seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS,
        queue: str | None = None,
        task_name: str | None = None,
        *,
        nb_seconds: float | None = None,
    ) -> list[Job]:
        """Running jobs whose worker's heartbeat is older than the cutoff, or gone."""
        query, seconds = _stalled_query(seconds_since_heartbeat, nb_seconds)
        rows = await self.connector.execute_async(
            query, {"seconds": seconds, "queue": queue, "task_name": task_name}
        )
        return [Job.from_row(r) for r in rows]

    def get_stalled_jobs_sync(
        self,
        seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS,
        queue: str | None = None,
        task_name: str | None = None,
    ) -> list[Job]:
        query, seconds = _stalled_query(seconds_since_heartbeat, None)
        rows = self.connector.execute(
            query, {"seconds": seconds, "queue": queue, "task_name": task_name}
        )
        return [Job.from_row(r) for r in rows]

    def list_workers(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> list[dict[str, Any]]:
        return self.connector.execute(
            sql.query("list_workers"), {"seconds": float(seconds_since_heartbeat)}
        )

    async def list_workers_async(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> list[dict[str, Any]]:
        return await self.connector.execute_async(
            sql.query("list_workers"), {"seconds": float(seconds_since_heartbeat)}
        )

    # -- retry, cancel -----------------------------------------------------------------

    def retry_job_by_id(
        self,
        job_id: int,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        """Put a failed job back to todo (history kept, a ``retried`` event added)."""
        self._requeue(job_id, retry_at, priority, queue, lock, _RETRYABLE_BY_HAND)

    async def retry_job_by_id_async(
        self,
        job_id: int,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        await self._requeue_async(job_id, retry_at, priority, queue, lock, _RETRYABLE_BY_HAND)

    async def retry_job(
        self,
        job: Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        """Retry a stalled (doing) or failed job: its running attempt is recorded lost.

        For a ``job`` read while running (e.g. from ``get_stalled_jobs``) only that attempt
        is retried: if it has ended since (rescued, retried by a concurrent caller, finished,
        or the job is running again elsewhere), nothing happens.
        """
        running = job.status in (Status.DOING, Status.ABORTING)
        await self._requeue_async(
            job.id,
            retry_at,
            priority,
            queue,
            lock,
            (Status.DOING, Status.ABORTING, Status.FAILED),
            expected_attempt_id=job.attempt_id if running else None,
        )

    def _requeue(
        self,
        job_id: int,
        retry_at: datetime.datetime | None,
        priority: int | None,
        queue: str | None,
        lock: str | None,
        allowed: Sequence[Status],
    ) -> None:
        with self.connector.connection() as conn, conn.transaction():
            rows = self.connector.execute(sql.query("lock_job"), {"id": job_id}, conn=conn)
            job = _check_retryable(rows[0] if rows else None, job_id, allowed)
            self.connector.execute(
                sql.query("requeue_job"),
                _requeue_params(job, retry_at, priority, queue, lock),
                conn=conn,
            )

    async def _requeue_async(
        self,
        job_id: int,
        retry_at: datetime.datetime | None,
        priority: int | None,
        queue: str | None,
        lock: str | None,
        allowed: Sequence[Status],
        *,
        expected_attempt_id: int | None = None,
    ) -> None:
        async with self.connector.connection_async() as conn, conn.transaction():
            rows = await self.connector.execute_async(
                sql.query("lock_job"), {"id": job_id}, conn=conn
            )
            if (
                expected_attempt_id is not None
                and rows
                and (
                    rows[0]["attempt_id"] != expected_attempt_id
                    or rows[0]["status"] not in (Status.DOING, Status.ABORTING)
                )
            ):
                return  # that attempt already ended: nothing left to retry
            job = _check_retryable(rows[0] if rows else None, job_id, allowed)
            await self.connector.execute_async(
                sql.query("requeue_job"),
                _requeue_params(job, retry_at, priority, queue, lock),
                conn=conn,
            )

    def failed_job_ids(
        self,
        *,
        queue: str | None = None,
        task_name: str | None = None,
        since: datetime.datetime | None = None,
    ) -> list[int]:
        rows = self.connector.execute(
            sql.query("retry_failed_ids"), {"queue": queue, "task_name": task_name, "since": since}
        )
        return [r["id"] for r in rows]

    def cancel_job_by_id(self, job_id: int, abort: bool = False) -> bool:
        """Cancel a todo job; with ``abort=True`` also ask a running job to stop.

        Returns whether anything changed (False for a finished job).
        """
        with self.connector.connection() as conn:
            if self.connector.execute(sql.query("cancel_todo_job"), {"id": job_id}, conn=conn):
                return True
            if abort and self.connector.execute(
                sql.query("abort_running_job"), {"id": job_id}, conn=conn
            ):
                return True
            if not self.connector.execute(sql.query("get_job_status"), {"id": job_id}, conn=conn):
                raise JobNotFound(f"no job with id {job_id}")
        return False

    async def cancel_job_by_id_async(self, job_id: int, abort: bool = False) -> bool:
        async with self.connector.connection_async() as conn:
            run = self.connector.execute_async
            if await run(sql.query("cancel_todo_job"), {"id": job_id}, conn=conn):
                return True
            if abort and await run(sql.query("abort_running_job"), {"id": job_id}, conn=conn):
                return True
            if not await run(sql.query("get_job_status"), {"id": job_id}, conn=conn):
                raise JobNotFound(f"no job with id {job_id}")
        return False

    # -- `tracedjobs top` ---------------------------------------------------------------
    # ``where`` is a psycopg.sql.Composable built by tui/model.py from fixed fragments;
    # every value it refers to is a bound parameter in ``params``.

    def top_snapshot(
        self, where: Any, params: dict[str, Any], *, conn: Any = None
    ) -> dict[str, Any]:
        rows = self.connector.execute(_with_filter("top_snapshot", where), params, conn=conn)
        return rows[0]

    async def top_snapshot_async(
        self, where: Any, params: dict[str, Any], *, conn: Any = None
    ) -> dict[str, Any]:
        rows = await self.connector.execute_async(
            _with_filter("top_snapshot", where), params, conn=conn
        )
        return rows[0]

    async def top_matching_ids_async(
        self, where: Any, params: dict[str, Any], statuses: Sequence[str], *, conn: Any = None
    ) -> list[int]:
        rows = await self.connector.execute_async(
            _with_filter("top_matching_ids", where),
            {**params, "statuses": list(statuses)},
            conn=conn,
        )
        return [r["id"] for r in rows]

    async def retry_failed_jobs_async(self, ids: Sequence[int], *, conn: Any = None) -> int:
        """Put these jobs back to todo if they are failed; returns how many were."""
        rows = await self.connector.execute_async(
            sql.query("retry_failed_jobs"), {"ids": list(ids)}, conn=conn
        )
        return len(rows)

    async def cancel_todo_jobs_async(self, ids: Sequence[int], *, conn: Any = None) -> int:
        """Cancel these jobs if they are waiting (todo); returns how many were."""
        rows = await self.connector.execute_async(
            sql.query("cancel_todo_jobs"), {"ids": list(ids)}, conn=conn
        )
        return len(rows)

    # -- maintenance -------------------------------------------------------------------

    def prune_jobs(self, older_than_seconds: float, statuses: Sequence[str]) -> int:
        rows = self.connector.execute(
            sql.query("prune_jobs"),
            {"seconds": float(older_than_seconds), "statuses": list(statuses)},
        )
        return len(rows)

    # -- worker side (async only) ------------------------------------------------------

    async def claim_jobs(
        self,
        conn: psycopg.AsyncConnection[Any],
        *,
        worker_id: str,
        worker_name: str,
        queues: Sequence[str] | None,
        limit: int,
        finished: Sequence[AttemptResult] = (),
    ) -> tuple[list[dict[str, Any]], set[int]]:
        """Record finished attempts, then claim up to ``limit`` jobs: one round trip.

        Returns the claimed rows and the ids of the jobs whose result was recorded.
        """
        recorded: set[int] = set()
        # No conn.transaction() here: inside a pipeline it nests pipelines and costs three
        # extra syncs (round trips). The statements of a pipeline up to its one Sync run in a
        # single implicit transaction: both commit together at the Sync, or neither does.
        # ``conn`` must be in autocommit mode and outside any transaction (pool connections are).
        async with conn.pipeline():
            if finished:
                finish_cur = await conn.execute(sql.query("finish_jobs"), finish_params(finished))
            if limit > 0:
                claim_cur = conn.cursor(row_factory=psycopg.rows.dict_row)
                await claim_cur.execute(
                    sql.query("claim_jobs"),
                    {
                        "worker_id": worker_id,
                        "worker_name": worker_name,
                        "queues": list(queues) if queues else None,
                        "limit": limit,
                    },
                )
        if finished:
            recorded = {row[0] for row in await finish_cur.fetchall()}
        rows = await claim_cur.fetchall() if limit > 0 else []
        return rows, recorded

    async def finish_jobs(
        self, conn: psycopg.AsyncConnection[Any], results: Sequence[AttemptResult]
    ) -> set[int]:
        cur = await conn.execute(sql.query("finish_jobs"), finish_params(results))
        return {row[0] for row in await cur.fetchall()}

    async def next_scheduled_in(
        self, conn: psycopg.AsyncConnection[Any], queues: Sequence[str] | None
    ) -> float | None:
        cur = await conn.execute(
            sql.query("next_scheduled_in"), {"queues": list(queues) if queues else None}
        )
        row = await cur.fetchone()
        return row[0] if row else None

    async def register_worker(self, conn: psycopg.AsyncConnection[Any], **worker: Any) -> None:
        await conn.execute(sql.query("register_worker"), worker)

    async def heartbeat(self, conn: psycopg.AsyncConnection[Any], worker_id: str) -> bool:
        """Bump the heartbeat; False if the row is gone (we were declared dead)."""
        cur = await conn.execute(sql.query("heartbeat"), {"id": worker_id})
        return await cur.fetchone() is not None

    async def unregister_worker(self, conn: psycopg.AsyncConnection[Any], worker_id: str) -> None:
        await conn.execute(sql.query("unregister_worker"), {"id": worker_id})

    async def aborting_job_ids(
        self, conn: psycopg.AsyncConnection[Any], worker_id: str
    ) -> set[int]:
        cur = await conn.execute(sql.query("aborting_jobs_of_worker"), {"id": worker_id})
        return {row[0] for row in await cur.fetchall()}

    async def rescue_dead_workers(
        self,
        conn: psycopg.AsyncConnection[Any],
        seconds: float,
        decide: Callable[[Job], AttemptResult],
        *,
        exclude: str | None = None,
    ) -> list[tuple[Job, AttemptResult]]:
        """Rescue the running jobs of every worker whose heartbeat is older than ``seconds``.

        Per dead worker, one transaction: delete its row (the claim — of two rescuers only
        one gets it), mark its running attempts ``lost`` and retry or fail each job as
        ``decide`` says. Jobs left running with no worker row at all (for longer than
        ``seconds``) are rescued the same way. ``exclude`` is the calling worker's id: a
        worker resuming from a pause never rescues itself (its next heartbeat revives it).
        Returns what was done, for logs and metrics.
        """
        rescued: list[tuple[Job, AttemptResult]] = []
        cur = await conn.execute(sql.query("dead_workers"), {"seconds": seconds})
        dead = [row[0] for row in await cur.fetchall() if str(row[0]) != exclude]
        for worker_id in dead:
            async with conn.transaction():
                cur = await conn.execute(
                    sql.query("claim_dead_worker"), {"id": worker_id, "seconds": seconds}
                )
                if await cur.fetchone() is None:
                    continue  # another rescuer got it, or it came back to life
                rescued += await self._rescue_locked(
                    conn, "lock_jobs_of_worker", worker_id, seconds, decide
                )
        async with conn.transaction():
            rescued += await self._rescue_locked(conn, "lock_orphan_jobs", None, seconds, decide)
        return rescued

    async def _rescue_locked(
        self,
        conn: psycopg.AsyncConnection[Any],
        query_name: str,
        worker_id: Any,
        seconds: float,
        decide: Callable[[Job], AttemptResult],
    ) -> list[tuple[Job, AttemptResult]]:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(sql.query(query_name), {"id": worker_id, "seconds": seconds})
        jobs = [Job.from_row(row) for row in await cur.fetchall()]
        if not jobs:
            return []
        results = [decide(job) for job in jobs]
        recorded = await self.finish_jobs(conn, results)
        return [(j, r) for j, r in zip(jobs, results, strict=True) if j.id in recorded]

    async def prune_dead_workers(self, conn: psycopg.AsyncConnection[Any], seconds: float) -> int:
        """Delete the rows of workers silent for ``seconds`` without rescuing their jobs."""
        cur = await conn.execute(sql.query("prune_dead_workers"), {"seconds": seconds})
        return len(await cur.fetchall())

    async def defer_periodic(
        self, conn: psycopg.AsyncConnection[Any], params: dict[str, Any]
    ) -> int | None:
        """Defer one tick of a periodic task; returns the new job id, or None if taken/skipped."""
        rows = await self.connector.execute_async(
            sql.query("defer_periodic_job"), params, conn=conn
        )
        return rows[0]["job_id"] if rows else None

    async def prune_periodic_ticks(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.query("prune_periodic_ticks"))

    # -- database-wide gauges (one elected worker) ---------------------------------------

    async def try_gauge_lock(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Try to become the gauge exporter; the lock lives as long as ``conn``'s session."""
        cur = await conn.execute(sql.query("try_gauge_lock"))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def gauge_snapshot(
        self, conn: psycopg.AsyncConnection[Any], seconds_since_heartbeat: float
    ) -> dict[str, list[dict[str, Any]]]:
        """Workers (with liveness), job counts by queue and status, oldest ready job per queue."""
        result: dict[str, list[dict[str, Any]]] = {}
        params = {"seconds": float(seconds_since_heartbeat)}
        for key, name, args in (
            ("workers", "gauge_workers", params),
            ("queue_jobs", "gauge_queue_jobs", None),
            ("oldest_ready", "gauge_oldest_ready", None),
        ):
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cur.execute(sql.query(name), args)
            result[key] = await cur.fetchall()
        return result
