"""A test app for the heartbeat-under-load test: a periodic task ticking every second (so
periodic deferral also waits on a slow database), a long job and many short ones."""

from __future__ import annotations

import time

import anyio

import tracedjobs
from tests.apps.recording import record_run

app = tracedjobs.App()


@app.periodic(cron="* * * * * *")
@app.task(name="tick", queue="ticks")
async def tick(timestamp: int) -> None:
    return None


@app.task(pass_context=True, name="long")
async def long(context: tracedjobs.JobContext, seconds: float) -> None:
    started = time.time()
    await anyio.to_thread.run_sync(record_run, context, "start", started)
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(record_run, context, "done", started)


@app.task(name="short")
async def short(seconds: float = 0.2) -> None:
    await anyio.sleep(seconds)
