"""`timeout=` on a task (§5, issue 4 item 7).

Async tasks are cancelled. A sync task's thread cannot be interrupted: at the deadline the
attempt is recorded failed with TimeoutError and the job's abort flag turns on; the thread
runs on until the function returns (its result is discarded) and keeps its worker slot
until then, so stuck threads cannot pile up.
"""

from __future__ import annotations

import threading
import time

import anyio

import tracedjobs
from tests.integration.running import finish, gaps, outcomes, running_worker, wait_for_status


def test_async_task_over_its_timeout_is_cancelled_and_fails(app: tracedjobs.App) -> None:
    cancelled: list[bool] = []

    @app.task(timeout=0.3)
    async def slow() -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    (job,) = finish(app, slow.defer())
    assert cancelled == [True]
    assert job.status == tracedjobs.Status.FAILED
    (attempt,) = job.attempt_records
    assert attempt.outcome == "failed"
    assert attempt.error_type == "TimeoutError"
    assert "timeout of 0.3 s" in (attempt.error_message or "")
    assert attempt.duration is not None and 0.3 <= attempt.duration < 3


def test_timed_out_attempts_are_retried_per_the_strategy(app: tracedjobs.App) -> None:
    @app.task(timeout=0.2, retry=tracedjobs.RetryStrategy(max_attempts=2, wait=0.1))
    async def always_slow() -> None:
        await anyio.sleep(30)

    (job,) = finish(app, always_slow.defer())
    assert outcomes(job) == ["retried", "retried", "failed"]
    assert {a.error_type for a in job.attempt_records} == {"TimeoutError"}
    assert all(g >= 0.1 for g in gaps(job))


def test_sync_task_timeout_fails_the_attempt_and_keeps_its_slot_until_the_thread_returns(
    app: tracedjobs.App,
) -> None:
    release = threading.Event()
    saw_abort: list[bool] = []
    reasons: list[tracedjobs.AbortReason | None] = []
    order: list[str] = []

    @app.task(timeout=0.3, retry=1, pass_context=True)
    def stuck(context: tracedjobs.JobContext) -> None:
        if context.job.attempts == 0:
            # At the deadline the abort flag turns on, for the task to notice...
            deadline = time.monotonic() + 10
            while not context.should_abort() and time.monotonic() < deadline:
                time.sleep(0.01)
            saw_abort.append(context.should_abort())
            reasons.append(context.abort_reason())
            release.wait(30)  # ...but this one ignores it: its thread cannot be interrupted
            order.append("abandoned thread returned")
        else:
            order.append("second attempt")

    async def main() -> tracedjobs.Job:
        stuck_id = await stuck.defer_async()
        try:
            async with running_worker(app, concurrency=1):
                with anyio.fail_after(10):
                    while not (await app.job_manager.get_job_async(stuck_id)).attempts:
                        await anyio.sleep(0.02)
                # The retry is due, but the abandoned thread still holds the only slot.
                await anyio.sleep(1.0)
                job = await app.job_manager.get_job_async(stuck_id)
                assert job.status == tracedjobs.Status.TODO and len(job.attempt_records) == 1
                assert order == []
                release.set()
                return await wait_for_status(app, stuck_id)
        finally:
            release.set()
            await app.connector.close_async()

    job = anyio.run(main)
    assert saw_abort == [True]
    assert reasons == [tracedjobs.AbortReason.TIMEOUT]
    assert order == ["abandoned thread returned", "second attempt"]
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert outcomes(job) == ["retried", "succeeded"]
    first = job.attempt_records[0]
    assert first.error_type == "TimeoutError"
    assert "cannot be interrupted" in (first.error_message or "")
    assert first.duration is not None and 0.3 <= first.duration < 3


def test_a_task_within_its_timeout_succeeds(app: tracedjobs.App) -> None:
    @app.task(timeout=5)
    def fast() -> None:
        time.sleep(0.05)

    (job,) = finish(app, fast.defer())
    assert job.status == tracedjobs.Status.SUCCEEDED
