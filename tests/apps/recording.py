"""How the test apps' tasks prove what ran: one `test_runs` row per call."""

from __future__ import annotations

import os

import psycopg

import tracedjobs


def record_run(
    context: tracedjobs.JobContext, label: str, started: float, value: object = None
) -> None:
    """Insert a row: job id, label, this process's pid, start and end time, a JSON value."""
    with psycopg.connect(context.app.connector.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO test_runs (job_id, label, pid, started_at, finished_at, value) "
            "VALUES (%s, %s, %s, to_timestamp(%s), clock_timestamp(), %s)",
            (context.job.id, label, os.getpid(), started, psycopg.types.json.Jsonb(value)),
        )


def record_attempt_run(context: tracedjobs.JobContext, label: str, started: float) -> None:
    """``record_run`` with the 1-based run number (lost runs included) as the value."""
    record_run(context, label, started, {"attempt": context.job.attempt_number})
