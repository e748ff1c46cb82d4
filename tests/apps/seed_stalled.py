"""Seed 000's ``retry_stalled_jobs`` periodic task, verbatim but for two changes:
``procrastinate`` is renamed ``tracedjobs``, and the cron runs every 2 seconds (6 fields)
instead of every 10 minutes so that the test stays short.
"""

from __future__ import annotations

import time

import anyio

import tracedjobs
from tests.apps.recording import record_attempt_run as _record

app = tracedjobs.App()


# --- seed 000, verbatim -------------------------------------------------------------------
@app.periodic(cron="* * * * * */2")
@app.task(queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context, timestamp):
    stalled_jobs = await app.job_manager.get_stalled_jobs()
    for job in stalled_jobs:
        await app.job_manager.retry_job(job)
# --- end of seed --------------------------------------------------------------------------


@app.task(pass_context=True, name="long_job")
async def long_job(context: tracedjobs.JobContext, seconds: float = 60.0) -> None:
    """Long on its first run; a retried run finishes at once. No retry strategy: only the
    seed's periodic task brings it back."""
    started = time.time()
    await anyio.to_thread.run_sync(_record, context, "start", started)
    if context.job.attempt_number == 1:
        await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, "done", started)
