"""A test app for the worker fault tests (issue 10): tasks that misbehave in every way a
task can, next to well-behaved ones. Tasks record what ran in the `test_runs` table."""

from __future__ import annotations

import time
from typing import Any

import anyio

import tracedjobs
from tests.apps import basic
from tests.apps.recording import record_run

app = tracedjobs.App()


# -- well-behaved -------------------------------------------------------------------------


# The basic app's recording task, registered here too: (label, sleep) → one test_runs row.
ok = app.task(pass_context=True, name="ok")(basic.record_async.func)


@app.task(pass_context=True, name="sleep_record")
async def sleep_record(context: tracedjobs.JobContext, seconds: float, label: str = "") -> None:
    """Records ``start`` at once and ``done`` after ``seconds``."""
    started = time.time()
    await anyio.to_thread.run_sync(record_run, context, f"{label}start", started)
    await anyio.sleep(seconds)
    await anyio.to_thread.run_sync(record_run, context, f"{label}done", started)


# -- BaseExceptions and broken exceptions (faults 1 and 2) -------------------------------


@app.task(name="raise_keyboard_interrupt")
async def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@app.task(name="raise_keyboard_interrupt_sync")
def raise_keyboard_interrupt_sync() -> None:
    raise KeyboardInterrupt


@app.task(name="raise_system_exit")
def raise_system_exit() -> None:
    raise SystemExit(3)


@app.task(name="raise_system_exit_async")
async def raise_system_exit_async() -> None:
    raise SystemExit(3)


class BadStr(Exception):
    """An exception whose message cannot be computed."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ of BadStr raised")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ of BadStr raised")


@app.task(name="raise_bad_str")
async def raise_bad_str() -> None:
    raise BadStr("unprintable")


# -- results the database refuses (fault 4) ----------------------------------------------


class RefusedRetry(tracedjobs.BaseRetryStrategy):
    """Retries into a place PostgreSQL cannot store: a NUL in a text, or a huge priority."""

    def __init__(self, **decision: Any) -> None:
        self.decision = decision

    def get_retry_decision(
        self, *, exception: BaseException, job: tracedjobs.Job
    ) -> tracedjobs.RetryDecision | None:
        return tracedjobs.RetryDecision(retry_in={"seconds": 0}, **self.decision)


async def _fail_at(until: float) -> None:
    # Every job of the batch sleeps until the same moment, so their results are written
    # together in one batch.
    await anyio.sleep(max(0.0, until - time.time()))
    raise RuntimeError("fails so that its retry strategy decides")


@app.task(name="refused_queue", retry=RefusedRetry(queue="bad\x00queue"))
async def refused_queue(until: float) -> None:
    await _fail_at(until)


@app.task(name="refused_lock", retry=RefusedRetry(lock="bad\x00lock"))
async def refused_lock(until: float) -> None:
    await _fail_at(until)


@app.task(name="refused_priority", retry=RefusedRetry(priority=2**40))
async def refused_priority(until: float) -> None:
    await _fail_at(until)


@app.task(pass_context=True, name="ok_at")
async def ok_at(context: tracedjobs.JobContext, until: float, label: str = "") -> None:
    started = time.time()
    await anyio.sleep(max(0.0, until - time.time()))
    await anyio.to_thread.run_sync(record_run, context, label, started)


# -- sync timeouts (fault 6) -------------------------------------------------------------


@app.task(pass_context=True, name="stuck", timeout=0.5)
def stuck(context: tracedjobs.JobContext, seconds: float = 3.0) -> None:
    """Ignores its timeout and abort flag: its thread runs ``seconds`` whatever happens."""
    started = time.time()
    record_run(context, "start", started)
    time.sleep(seconds)
    record_run(context, "end", started)


@app.task(pass_context=True, name="polite", timeout=0.5)
def polite(context: tracedjobs.JobContext, patience: float = 5.0) -> None:
    """Polls ``should_abort()`` and returns as soon as it turns true."""
    started = time.monotonic()
    while not context.should_abort() and time.monotonic() - started < patience:
        time.sleep(0.02)
    after = time.monotonic() - started
    record_run(
        context,
        "polite",
        time.time() - after,
        {"saw_abort": context.should_abort(), "after": after},
    )


# -- a scheduled retry (fault 10) --------------------------------------------------------


@app.task(
    pass_context=True,
    name="fail_once",
    retry=tracedjobs.RetryStrategy(max_attempts=1, wait=0.3),
)
async def fail_once(context: tracedjobs.JobContext) -> None:
    if context.job.attempts == 0:
        raise RuntimeError("first attempt fails")


class WaitFromArgs(tracedjobs.BaseRetryStrategy):
    """One retry, after the number of seconds the job was deferred with (``wait``)."""

    def get_retry_decision(
        self, *, exception: BaseException, job: tracedjobs.Job
    ) -> tracedjobs.RetryDecision | None:
        if job.attempts >= 1:
            return None
        return tracedjobs.RetryDecision(retry_in={"seconds": job.args["wait"]})


@app.task(pass_context=True, name="fail_once_wait", retry=WaitFromArgs())
async def fail_once_wait(context: tracedjobs.JobContext, wait: float) -> None:
    if context.job.attempts == 0:
        raise RuntimeError("first attempt fails")
