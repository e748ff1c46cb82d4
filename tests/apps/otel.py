"""A test app for telemetry tests: tasks that log, nest spans, fail, retry, defer, abort."""

from __future__ import annotations

import logging
import os
import time

import anyio
from opentelemetry import trace

import tracedjobs

# TRACEDJOBS_TEST_TRACE_PARENT=parent makes attempts children of the producer span.
app = tracedjobs.App(trace_parent=os.environ.get("TRACEDJOBS_TEST_TRACE_PARENT", "link"))
logger = logging.getLogger("tests.apps.otel")
tracer = trace.get_tracer("tests.apps.otel")


@app.task(name="traced")
def traced(label: str = "") -> None:
    # Stands for an instrumented HTTP client or database driver called by the task.
    with tracer.start_as_current_span("inner work"):
        logger.warning("working on %s", label)


@app.task(name="fan_out")
def fan_out() -> None:
    traced.defer(label="child")


@app.task(name="traced_async")
async def traced_async(label: str = "") -> None:
    with tracer.start_as_current_span("inner work"):
        logger.warning("working on %s", label)
        await anyio.sleep(0)


@app.task(name="broken", retry=1)
def broken() -> None:
    raise ValueError("broken on purpose")


@app.task(name="defers", pass_context=True)
def defers(context: tracedjobs.JobContext) -> None:
    if context.job.attempts == 0:
        raise tracedjobs.DeferJob(delay=0, increment_attempts=True)


@app.task(name="slow")
def slow(seconds: float = 60.0) -> None:
    time.sleep(seconds)


@app.task(name="abortable")
async def abortable() -> None:
    while True:
        await anyio.sleep(0.05)
