"""A test app for liveness tests: rescue of dead or paused workers, and shutdown.

Tasks write a ``start`` row when an attempt begins and a ``done`` row when it ends, both
with the attempt number and the worker's pid, so tests can see which process ran what.
"""

from __future__ import annotations

import time

import anyio

import tracedjobs
from tests.apps.recording import record_attempt_run as _record

app = tracedjobs.App()


@app.task(pass_context=True, name="slow_first_attempt", retry=2)
async def slow_first_attempt(context: tracedjobs.JobContext, seconds: float = 60.0) -> None:
    """Sleeps ``seconds`` on its first run only; later runs (lost ones count) finish at once."""
    started = time.time()
    await anyio.to_thread.run_sync(_record, context, "start", started)
    if context.job.attempt_number == 1:
        await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, "done", started)


@app.task(pass_context=True, name="slow", retry=2)
async def slow(context: tracedjobs.JobContext, seconds: float = 2.0) -> None:
    """Sleeps ``seconds`` on every attempt."""
    started = time.time()
    await anyio.to_thread.run_sync(_record, context, "start", started)
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, "done", started)


@app.task(pass_context=True, name="slow_no_retry")
async def slow_no_retry(context: tracedjobs.JobContext, seconds: float = 60.0) -> None:
    started = time.time()
    await anyio.to_thread.run_sync(_record, context, "start", started)
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, "done", started)


@app.task(pass_context=True, name="slow_on_lost_fail", retry=5, on_lost="fail")
async def slow_on_lost_fail(context: tracedjobs.JobContext, seconds: float = 60.0) -> None:
    started = time.time()
    await anyio.to_thread.run_sync(_record, context, "start", started)
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, "done", started)


@app.task(pass_context=True, name="blocks_event_loop")
async def blocks_event_loop(context: tracedjobs.JobContext, seconds: float = 3.0) -> None:
    """A badly written async task: sync work that blocks the event loop (and heartbeats)."""
    started = time.time()
    time.sleep(seconds)
    _record(context, "done", started)
