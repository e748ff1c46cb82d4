"""JobManager: reading and changing jobs (``app.job_manager``).

Each piece of database logic is written once, as an *operation*: a generator that yields
the queries it needs and receives their rows (the ``_op_*`` functions below). The
connector drives an operation on a sync or an async connection, so every public method is
a one-line sync driver with a one-line ``_async`` twin and the two can never drift apart.
As in Procrastinate, ``get_stalled_jobs`` and ``retry_job`` are coroutines (the seeds await
them); their twins are ``get_stalled_jobs_sync`` / ``retry_job_sync``.

The worker's own queries (claim, finish, heartbeat, rescue) live in ``store.py``.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from tracedjobs import migrations, sql
from tracedjobs.connector import Operation, PsycopgConnector, Query
from tracedjobs.exceptions import AlreadyEnqueued, InvalidJobState, JobNotFound
from tracedjobs.jobs import Attempt, Event, Job, Status

if TYPE_CHECKING:
    from tracedjobs.tasks import JobSpec

DEFAULT_STALLED_SECONDS = 30.0
_RUNNING = (Status.DOING, Status.ABORTING)


def _q(name: str, **params: Any) -> Query:
    return Query(sql.query(name), params)


def _filtered(name: str, where: Any, params: dict[str, Any]) -> Query:
    """A named query with its ``{filter}`` slot filled by a composed WHERE fragment."""
    return Query(psycopg.sql.SQL(sql.query(name)).format(filter=where), params)


def _status(status: str | Status | None) -> str | None:
    # Raises ValueError on an unknown status: a typo must not silently match nothing.
    return None if status is None else str(Status(str(status)))


# -- operations ---------------------------------------------------------------------------


# The job columns a defer binds, by the JobSpec attribute that holds each.
_SPEC_COLUMNS = {
    "queue_name": "queue",
    "task_name": "task_name",
    "priority": "priority",
    "lock": "lock",
    "queueing_lock": "queueing_lock",
    "args": "args_json",
}


def _op_defer(specs: Sequence[JobSpec]) -> Operation[list[int]]:
    first = specs[0]
    # A batch is one send span (see tasks.JobDeferrer): one trace context for every job.
    params: dict[str, Any] = {"traceparent": first.traceparent, "tracestate": first.tracestate}
    if len(specs) == 1 and first.scheduled_at is None:
        # One job due now: a plain insert of scalars (see the query).
        name = "defer_job"
        params |= {column: getattr(first, attr) for column, attr in _SPEC_COLUMNS.items()}
    else:
        name = "defer_jobs"
        params |= {
            column: [getattr(s, attr) for s in specs] for column, attr in _SPEC_COLUMNS.items()
        }
        params["scheduled_at"] = [s.scheduled_at for s in specs]
    try:
        ids = yield Query(sql.query(name), params, scalars=True)
    except pg_errors.UniqueViolation:
        locks = sorted({s.queueing_lock for s in specs if s.queueing_lock})
        raise AlreadyEnqueued(
            f"a job with queueing lock {', '.join(map(repr, locks))} is already waiting in "
            "todo; nothing was deferred"
        ) from None
    return ids


def _op_get_job(job_id: int) -> Operation[Job]:
    rows = yield _q("get_job", id=job_id)
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    job = Job.from_row(rows[0])
    job.events = [Event(**e) for e in (yield _q("job_events", id=job_id))]
    job.attempt_records = [Attempt.from_row(a) for a in (yield _q("job_attempts", id=job_id))]
    return job


def _op_get_job_status(job_id: int) -> Operation[Status]:
    rows = yield _q("get_job_status", id=job_id)
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    return Status(rows[0]["status"])


def _op_list_jobs(
    id: int | None,
    queue: str | None,
    task: str | None,
    status: str | Status | None,
    lock: str | None,
    queueing_lock: str | None,
    worker_id: str | None,
    limit: int | None,
) -> Operation[list[Job]]:
    rows = yield _q(
        "list_jobs",
        id=id,
        queue=queue,
        task_name=task,
        status=_status(status),
        lock=lock,
        queueing_lock=queueing_lock,
        worker_id=worker_id,
        limit=limit,
    )
    return [Job.from_row(r) for r in rows]


_STATS = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")


_GROUP_COLUMNS = {"queues": "queue_name", "tasks": "task_name", "locks": "lock"}


def _op_list_groups(
    by: str, queue: str | None, task: str | None, status: str | Status | None, lock: str | None
) -> Operation[list[dict[str, Any]]]:
    """Jobs counted by queue, task or lock, per status (Procrastinate's list_* shape)."""
    query = psycopg.sql.SQL(sql.query("list_groups")).format(
        column=psycopg.sql.Identifier(_GROUP_COLUMNS[by])
    )
    params = {"queue": queue, "task_name": task, "status": _status(status), "lock": lock}
    rows = yield Query(query, params)
    return [
        {"name": r["name"], "jobs_count": r["jobs_count"]}
        | {s: int((r["stats"] or {}).get(s, 0)) for s in _STATS}
        for r in rows
    ]


def _op_heartbeat_cutoff(seconds: float) -> Operation[datetime.datetime]:
    rows = yield _q("heartbeat_cutoff", seconds=float(seconds))
    cutoff: datetime.datetime = rows[0]["cutoff"]
    return cutoff


def _op_stalled_jobs(
    seconds_since_heartbeat: float,
    queue: str | None,
    task_name: str | None,
    nb_seconds: float | None,
) -> Operation[list[Job]]:
    if nb_seconds is not None:
        name, seconds = "get_stalled_jobs_by_started", float(nb_seconds)
    else:
        name, seconds = "get_stalled_jobs", float(seconds_since_heartbeat)
    rows = yield _q(name, seconds=seconds, queue=queue, task_name=task_name)
    return [Job.from_row(r) for r in rows]


def _warn_nb_seconds(nb_seconds: float | None) -> None:
    if nb_seconds is not None:
        warnings.warn(
            "get_stalled_jobs(nb_seconds=...) is deprecated: it selects jobs by time spent "
            "in doing and may retry jobs that are still running; use seconds_since_heartbeat",
            DeprecationWarning,
            stacklevel=3,
        )


def _op_list_workers(seconds: float) -> Operation[list[dict[str, Any]]]:
    return (yield _q("list_workers", seconds=float(seconds)))


def _op_requeue(
    job_id: int,
    retry_at: datetime.datetime | None,
    priority: int | None,
    queue: str | None,
    lock: str | None,
    *,
    allowed: Sequence[Status],
    expected_attempt_id: int | None = None,
) -> Operation[None]:
    """Put a job back to todo, history kept; run inside a transaction (it locks the row).

    With ``expected_attempt_id``, only that running attempt is retried: if it has ended
    since (rescued, retried by a concurrent caller, finished), nothing happens.
    """
    rows = yield _q("lock_job", id=job_id)
    if expected_attempt_id is not None and rows:
        row = rows[0]
        if row["attempt_id"] != expected_attempt_id or row["status"] not in _RUNNING:
            return
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    job = Job.from_row(rows[0])
    if job.status not in allowed:
        raise InvalidJobState(
            f"job {job_id} is {job.status}, not {' or '.join(map(str, allowed))}: "
            "only failed jobs can be retried"
        )
    yield _q(
        "requeue_job",
        id=job.id,
        attempt_id=job.attempt_id,
        was_running=job.status in _RUNNING,
        retry_at=retry_at,
        priority=priority,
        queue=queue,
        lock=lock,
    )


def _op_failed_job_ids(
    queue: str | None, task_name: str | None, since: datetime.datetime | None
) -> Operation[list[int]]:
    rows = yield _q("retry_failed_ids", queue=queue, task_name=task_name, since=since)
    return [r["id"] for r in rows]


def _op_cancel(job_id: int, abort: bool, delete_job: bool) -> Operation[bool]:
    rows = yield _q("cancel_job", id=job_id, abort=abort, delete_job=delete_job)
    return bool(rows)


def _op_top_snapshot(where: Any, params: dict[str, Any]) -> Operation[dict[str, Any]]:
    return (yield _filtered("top_snapshot", where, params))[0]


def _op_top_matching_ids(
    where: Any, params: dict[str, Any], statuses: Sequence[str]
) -> Operation[list[int]]:
    rows = yield _filtered("top_matching_ids", where, {**params, "statuses": list(statuses)})
    return [r["id"] for r in rows]


def _op_count(name: str, **params: Any) -> Operation[int]:
    rows = yield _q(name, **params)
    return len(rows) if not rows or "n" not in rows[0] else int(rows[0]["n"])


def _op_check_connection() -> Operation[bool]:
    rows = yield _q("check_connection")
    return rows[0]["check"] is not None


class JobManager:
    """Reads and changes jobs. Available as ``app.job_manager``.

    Every method has an ``_async`` twin; ``connection=`` (where offered) runs the query on
    your own psycopg connection, e.g. inside your transaction.
    """

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

    def check_connection(self) -> bool:
        """True when the database answers and the tracedjobs tables exist (Procrastinate's)."""
        return self.connector.run(_op_check_connection())

    async def check_connection_async(self) -> bool:
        return await self.connector.run_async(_op_check_connection())

    # -- defer -------------------------------------------------------------------------

    def defer_jobs(self, specs: Sequence[JobSpec], *, connection: Any = None) -> list[int]:
        return self.connector.run(_op_defer(specs), conn=connection)

    async def defer_jobs_async(
        self, specs: Sequence[JobSpec], *, connection: Any = None
    ) -> list[int]:
        return await self.connector.run_async(_op_defer(specs), conn=connection)

    # -- reading -----------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        """The job with its events and attempt records; raises JobNotFound."""
        return self.connector.run(_op_get_job(job_id))

    async def get_job_async(self, job_id: int) -> Job:
        return await self.connector.run_async(_op_get_job(job_id))

    def get_job_status(self, job_id: int, connection: Any = None) -> Status:
        return self.connector.run(_op_get_job_status(job_id), conn=connection)

    async def get_job_status_async(self, job_id: int, connection: Any = None) -> Status:
        return await self.connector.run_async(_op_get_job_status(job_id), conn=connection)

    def list_jobs(
        self,
        id: int | None = None,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        worker_id: str | None = None,
        *,
        task_name: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first (``limit`` caps how many)."""
        return self.connector.run(
            _op_list_jobs(
                id, queue, task or task_name, status, lock, queueing_lock, worker_id, limit
            )
        )

    async def list_jobs_async(
        self,
        id: int | None = None,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        worker_id: str | None = None,
        *,
        task_name: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        return await self.connector.run_async(
            _op_list_jobs(
                id, queue, task or task_name, status, lock, queueing_lock, worker_id, limit
            )
        )

    def list_queues(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per queue: ``name``, ``jobs_count`` and a count per status."""
        return self.connector.run(_op_list_groups("queues", queue, task, status, lock))

    async def list_queues_async(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.connector.run_async(_op_list_groups("queues", queue, task, status, lock))

    def list_tasks(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per task name: ``name``, ``jobs_count`` and a count per status."""
        return self.connector.run(_op_list_groups("tasks", queue, task, status, lock))

    async def list_tasks_async(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.connector.run_async(_op_list_groups("tasks", queue, task, status, lock))

    def list_locks(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per lock: ``name``, ``jobs_count`` and a count per status."""
        return self.connector.run(_op_list_groups("locks", queue, task, status, lock))

    async def list_locks_async(
        self,
        queue: str | None = None,
        task: str | None = None,
        status: str | Status | None = None,
        lock: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self.connector.run_async(_op_list_groups("locks", queue, task, status, lock))

    # -- liveness ----------------------------------------------------------------------

    def heartbeat_cutoff(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> datetime.datetime:
        """The instant before which a worker heartbeat counts as stale (database clock).

        Every liveness decision uses the same SQL function, ``tracedjobs_heartbeat_cutoff``.
        """
        return self.connector.run(_op_heartbeat_cutoff(seconds_since_heartbeat))

    async def heartbeat_cutoff_async(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> datetime.datetime:
        return await self.connector.run_async(_op_heartbeat_cutoff(seconds_since_heartbeat))

    async def get_stalled_jobs(
        self,
        seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS,
        queue: str | None = None,
        task_name: str | None = None,
        *,
        nb_seconds: float | None = None,
    ) -> list[Job]:
        """Running jobs whose worker's heartbeat is older than the cutoff, or gone (a coroutine,
        as in Procrastinate)."""
        _warn_nb_seconds(nb_seconds)
        return await self.connector.run_async(
            _op_stalled_jobs(seconds_since_heartbeat, queue, task_name, nb_seconds)
        )

    get_stalled_jobs_async = get_stalled_jobs

    def get_stalled_jobs_sync(
        self,
        seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS,
        queue: str | None = None,
        task_name: str | None = None,
        *,
        nb_seconds: float | None = None,
    ) -> list[Job]:
        _warn_nb_seconds(nb_seconds)
        return self.connector.run(
            _op_stalled_jobs(seconds_since_heartbeat, queue, task_name, nb_seconds)
        )

    def list_workers(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> list[dict[str, Any]]:
        return self.connector.run(_op_list_workers(seconds_since_heartbeat))

    async def list_workers_async(
        self, seconds_since_heartbeat: float = DEFAULT_STALLED_SECONDS
    ) -> list[dict[str, Any]]:
        return await self.connector.run_async(_op_list_workers(seconds_since_heartbeat))

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
        op = _op_requeue(job_id, retry_at, priority, queue, lock, allowed=(Status.FAILED,))
        self.connector.run(op, transaction=True)

    async def retry_job_by_id_async(
        self,
        job_id: int,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        op = _op_requeue(job_id, retry_at, priority, queue, lock, allowed=(Status.FAILED,))
        await self.connector.run_async(op, transaction=True)

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
        is retried: if it has ended since, nothing happens. A coroutine, as in Procrastinate.
        """
        await self.connector.run_async(
            _requeue_job(job, retry_at, priority, queue, lock), transaction=True
        )

    retry_job_async = retry_job

    def retry_job_sync(
        self,
        job: Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        self.connector.run(_requeue_job(job, retry_at, priority, queue, lock), transaction=True)

    def failed_job_ids(
        self,
        *,
        queue: str | None = None,
        task_name: str | None = None,
        since: datetime.datetime | None = None,
    ) -> list[int]:
        return self.connector.run(_op_failed_job_ids(queue, task_name, since))

    async def failed_job_ids_async(
        self,
        *,
        queue: str | None = None,
        task_name: str | None = None,
        since: datetime.datetime | None = None,
    ) -> list[int]:
        return await self.connector.run_async(_op_failed_job_ids(queue, task_name, since))

    def cancel_job_by_id(
        self, job_id: int, abort: bool = False, delete_job: bool = False, connection: Any = None
    ) -> bool:
        """Cancel a todo job (``delete_job``: delete it instead); with ``abort=True`` also ask
        a running job to stop. False when nothing changed (unknown id, finished job)."""
        return self.connector.run(_op_cancel(job_id, abort, delete_job), conn=connection)

    async def cancel_job_by_id_async(
        self, job_id: int, abort: bool = False, delete_job: bool = False, connection: Any = None
    ) -> bool:
        return await self.connector.run_async(
            _op_cancel(job_id, abort, delete_job), conn=connection
        )

    # -- `tracedjobs top` ---------------------------------------------------------------
    # ``where`` is a psycopg.sql.Composable built by tui/model.py from fixed fragments;
    # every value it refers to is a bound parameter in ``params``.

    def top_snapshot(
        self, where: Any, params: dict[str, Any], *, conn: Any = None
    ) -> dict[str, Any]:
        return self.connector.run(_op_top_snapshot(where, params), conn=conn)

    async def top_snapshot_async(
        self, where: Any, params: dict[str, Any], *, conn: Any = None
    ) -> dict[str, Any]:
        return await self.connector.run_async(_op_top_snapshot(where, params), conn=conn)

    def top_matching_ids(
        self, where: Any, params: dict[str, Any], statuses: Sequence[str], *, conn: Any = None
    ) -> list[int]:
        return self.connector.run(_op_top_matching_ids(where, params, statuses), conn=conn)

    async def top_matching_ids_async(
        self, where: Any, params: dict[str, Any], statuses: Sequence[str], *, conn: Any = None
    ) -> list[int]:
        return await self.connector.run_async(
            _op_top_matching_ids(where, params, statuses), conn=conn
        )

    def retry_failed_jobs(self, ids: Sequence[int], *, conn: Any = None) -> int:
        """Put these jobs back to todo if they are failed; returns how many were."""
        return self.connector.run(_op_count("retry_failed_jobs", ids=list(ids)), conn=conn)

    async def retry_failed_jobs_async(self, ids: Sequence[int], *, conn: Any = None) -> int:
        return await self.connector.run_async(
            _op_count("retry_failed_jobs", ids=list(ids)), conn=conn
        )

    def cancel_todo_jobs(self, ids: Sequence[int], *, conn: Any = None) -> int:
        """Cancel these jobs if they are waiting (todo); returns how many were."""
        return self.connector.run(_op_count("cancel_todo_jobs", ids=list(ids)), conn=conn)

    async def cancel_todo_jobs_async(self, ids: Sequence[int], *, conn: Any = None) -> int:
        return await self.connector.run_async(
            _op_count("cancel_todo_jobs", ids=list(ids)), conn=conn
        )

    def count_unfinished(self, job_ids: Sequence[int]) -> int:
        """How many of these jobs are still todo, doing or aborting."""
        return self.connector.run(_op_count("count_unfinished_jobs", ids=list(job_ids)))

    async def count_unfinished_async(self, job_ids: Sequence[int]) -> int:
        return await self.connector.run_async(_op_count("count_unfinished_jobs", ids=list(job_ids)))

    # -- maintenance -------------------------------------------------------------------

    def prune_jobs(
        self, older_than_seconds: float, statuses: Sequence[str], queue: str | None = None
    ) -> int:
        """Delete finished jobs (with their history) last changed more than that long ago."""
        return self.connector.run(_op_prune(older_than_seconds, statuses, queue))

    async def prune_jobs_async(
        self, older_than_seconds: float, statuses: Sequence[str], queue: str | None = None
    ) -> int:
        return await self.connector.run_async(_op_prune(older_than_seconds, statuses, queue))

    async def delete_old_jobs(
        self,
        nb_hours: float,
        queue: str | None = None,
        include_failed: bool | None = False,
        include_cancelled: bool | None = False,
    ) -> int:
        """Procrastinate's name: delete succeeded (and optionally failed/cancelled) jobs older
        than ``nb_hours``; aborted jobs count as cancelled."""
        statuses = ["succeeded"]
        if include_failed:
            statuses.append("failed")
        if include_cancelled:
            statuses += ["cancelled", "aborted"]
        return await self.prune_jobs_async(float(nb_hours) * 3600, statuses, queue)


def _requeue_job(
    job: Job,
    retry_at: datetime.datetime | None,
    priority: int | None,
    queue: str | None,
    lock: str | None,
) -> Operation[None]:
    running = job.status in _RUNNING
    return _op_requeue(
        job.id,
        retry_at,
        priority,
        queue,
        lock,
        allowed=(Status.DOING, Status.ABORTING, Status.FAILED),
        expected_attempt_id=job.attempt_id if running else None,
    )


def _op_prune(seconds: float, statuses: Sequence[str], queue: str | None) -> Operation[int]:
    return (
        yield from _op_count(
            "prune_jobs", seconds=float(seconds), statuses=list(statuses), queue=queue
        )
    )
