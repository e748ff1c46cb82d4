"""Shared helpers for the liveness acceptance tests (rescue, shutdown, periodic)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

import tracedjobs
from tests.helpers import query, scalar
from tracedjobs import sql

# Small intervals keep the suite fast: a worker silent for 2 s is dead.
FAST = ("--heartbeat-interval", "0.5", "--stalled-timeout", "2", "--polling-interval", "1")


def defer(db_url: str, task_name: str, **kwargs: Any) -> int:
    """Defer a job of ``task_name`` by name, without importing the worker's app."""
    app = tracedjobs.App(database_url=db_url)
    try:
        app.task(name=task_name)(lambda **_: None)
        return app.configure_task(task_name).defer(**kwargs)
    finally:
        app.close()


def status(db_url: str, job_id: int) -> str:
    return scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,))


def attempts(db_url: str, job_id: int) -> list[tuple[Any, ...]]:
    """(attempt, outcome, worker_id, error_type) per attempt, in order, the running one
    (read from the job row: its attempt row is written when it ends) included."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        rows = conn.execute(sql.query("job_attempts"), {"id": job_id}).fetchall()
    return [
        (r["attempt"], r["outcome"], str(r["worker_id"]) if r["worker_id"] else None,
         r["error_type"])
        for r in rows
    ]


def events(db_url: str, job_id: int) -> list[str]:
    """The types of the job's history entries, in order."""
    with psycopg.connect(db_url) as conn:
        return [r[2] for r in conn.execute(sql.query("job_events"), {"id": job_id}).fetchall()]


def runs(db_url: str, job_id: int) -> list[tuple[str, int, int]]:
    """(label, pid, attempt) for each row a test task wrote, in order."""
    return [
        (label, pid, value["attempt"])
        for label, pid, value in query(
            db_url,
            "SELECT label, pid, value FROM test_runs WHERE job_id = %s ORDER BY id",
            (job_id,),
        )
    ]


def worker_ids(db_url: str) -> dict[int, str]:
    """pid → worker id of every registered worker row."""
    return {pid: wid for wid, pid in query(db_url, "SELECT id::text, pid FROM tracedjobs_workers")}
