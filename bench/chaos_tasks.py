"""Tasks the chaos script's workers run (``--app bench.chaos_tasks:app``): fast, slow and
failing-then-retried, each sync and async. The App reads ``$TRACEDJOBS_DATABASE_URL``.

Every task retries generously, so a job whose attempt is lost to a killed or paused worker
runs again (and ends ``succeeded``): what the chaos script checks is that no job is lost
or finished twice, and that every re-run follows a ``lost`` (or ``retried``) attempt.
"""

from __future__ import annotations

import random
import time

import anyio

import tracedjobs

app = tracedjobs.App()

RETRY = tracedjobs.RetryStrategy(max_attempts=20, wait=0.2)


@app.task(name="fast", retry=RETRY)
async def fast(i: int) -> None:
    await anyio.sleep(random.uniform(0, 0.005))


@app.task(name="slow", retry=RETRY)
async def slow(i: int, seconds: float) -> None:
    await anyio.sleep(seconds)


@app.task(name="flaky", retry=RETRY, pass_context=True)
async def flaky(context: tracedjobs.JobContext, i: int) -> None:
    if context.job.attempts == 0:
        raise RuntimeError("the first attempt of a flaky job fails")


@app.task(name="fast_sync", retry=RETRY)
def fast_sync(i: int) -> None:
    time.sleep(random.uniform(0.001, 0.005))


@app.task(name="slow_sync", retry=RETRY)
def slow_sync(i: int, seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="flaky_sync", retry=RETRY, pass_context=True)
def flaky_sync(context: tracedjobs.JobContext, i: int) -> None:
    if context.job.attempts == 0:
        raise RuntimeError("the first attempt of a flaky job fails")
