"""`timeout=` on a task (§5, issue 4 item 7).

Async tasks are cancelled. A sync task's thread cannot be interrupted: the attempt is
recorded failed with TimeoutError and the worker slot is freed at the deadline, while the
thread runs on in the background until the function returns (its result is discarded).
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


def test_sync_task_timeout_fails_the_attempt_and_frees_the_slot(app: tracedjobs.App) -> None:
    release = threading.Event()
    thread_finished = threading.Event()
    order: list[str] = []

    @app.task(timeout=0.3, retry=1, pass_context=True)
    def stuck(context: tracedjobs.JobContext) -> None:
        if context.job.attempts == 0:
            release.wait(30)  # cannot be interrupted from outside
            order.append("abandoned thread returned")
            thread_finished.set()
        else:
            order.append("second attempt")

    @app.task
    def quick() -> None:
        order.append("quick")

    async def main() -> tracedjobs.Job:
        stuck_id = await stuck.defer_async()
        try:
            async with running_worker(app, concurrency=1):
                job = await wait_for_status(app, stuck_id)
                # With concurrency=1, another job runs while the timed-out thread is
                # still blocked: the slot was freed at the deadline.
                quick_id = await quick.defer_async()
                await wait_for_status(app, quick_id)
                assert not thread_finished.is_set()
                release.set()
            return job
        finally:
            release.set()
            await app.connector.close_async()

    job = anyio.run(main)
    assert thread_finished.wait(10)
    assert order == ["second attempt", "quick", "abandoned thread returned"]
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert outcomes(job) == ["retried", "succeeded"]
    first = job.attempt_records[0]
    assert first.error_type == "TimeoutError"
    assert "may still be running" in (first.error_message or "")
    assert first.duration is not None and 0.3 <= first.duration < 3


def test_a_task_within_its_timeout_succeeds(app: tracedjobs.App) -> None:
    @app.task(timeout=5)
    def fast() -> None:
        time.sleep(0.05)

    (job,) = finish(app, fast.defer())
    assert job.status == tracedjobs.Status.SUCCEEDED
