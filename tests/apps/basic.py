"""A test app for worker subprocesses. Tasks record what ran in the `test_runs` table."""

from __future__ import annotations

import time

import anyio

import tracedjobs
from tests.apps.recording import record_run as _record

app = tracedjobs.App()



@app.task(pass_context=True, name="record")
def record(context: tracedjobs.JobContext, label: str = "", sleep: float = 0.0) -> None:
    started = time.time()
    if sleep:
        time.sleep(sleep)
    _record(context, label, started)


@app.task(pass_context=True, name="record_async")
async def record_async(context: tracedjobs.JobContext, label: str = "", sleep: float = 0.0) -> None:
    started = time.time()
    if sleep:
        await anyio.sleep(sleep)
    await anyio.to_thread.run_sync(_record, context, label, started)


@app.task(pass_context=True, name="sleep_then_record")
async def sleep_then_record(context: tracedjobs.JobContext, seconds: float, label: str = "") -> None:
    started = time.time()
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(_record, context, label, started)


@app.task(name="noop")
async def noop() -> None:
    return None


@app.task(name="fail", retry=0)
def fail(message: str = "boom") -> None:
    raise RuntimeError(message)
