"""A test app with a periodic task ticking every second (6-field cron)."""

from __future__ import annotations

import os

import psycopg

import tracedjobs

app = tracedjobs.App()


@app.periodic(cron="* * * * * *", periodic_id="every-second", source="cron")
@app.task(name="tick", pass_context=True)
def tick(context: tracedjobs.JobContext, timestamp: int, source: str) -> None:
    with psycopg.connect(app.connector.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO test_runs (job_id, label, pid, started_at, finished_at, value) "
            "VALUES (%s, %s, %s, to_timestamp(%s), clock_timestamp(), %s)",
            (
                context.job.id,
                source,
                os.getpid(),
                timestamp,
                psycopg.types.json.Jsonb({"timestamp": timestamp}),
            ),
        )
