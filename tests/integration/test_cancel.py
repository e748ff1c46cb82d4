"""Cancel and abort (§5, issue 4 item 8)."""

from __future__ import annotations

import threading
import time

import anyio

import tracedjobs
from tests.integration.running import event_types, finish, outcomes, running_worker, wait_for_status


def test_cancelling_a_todo_job_means_it_never_runs(app: tracedjobs.App) -> None:
    runs: list[int] = []

    @app.task
    def never(n: int) -> None:
        runs.append(n)

    cancelled, kept = never.defer(n=1), never.defer(n=2)
    assert app.job_manager.cancel_job_by_id(cancelled) is True
    assert app.job_manager.get_job_status(cancelled) == tracedjobs.Status.CANCELLED
    finish(app, kept)
    assert runs == [2]
    job = app.job_manager.get_job(cancelled)
    assert job.status == tracedjobs.Status.CANCELLED
    assert event_types(job) == ["deferred", "cancelled"]
    assert job.attempt_records == []


def test_cancel_of_a_finished_or_missing_job(app: tracedjobs.App) -> None:
    @app.task
    def done() -> None:
        pass

    job_id = done.defer()
    finish(app, job_id)
    assert app.job_manager.cancel_job_by_id(job_id) is False
    assert app.job_manager.cancel_job_by_id(job_id, abort=True) is False
    assert app.job_manager.get_job_status(job_id) == tracedjobs.Status.SUCCEEDED
    # An unknown id is "nothing cancelled", as in Procrastinate.
    assert app.job_manager.cancel_job_by_id(job_id + 1000) is False


def run_and_abort(
    app: tracedjobs.App, task: tracedjobs.Task, *, started: threading.Event, abort: bool = True
) -> tracedjobs.Job:
    """Start the job, cancel it (with abort) while running, return it once finished."""

    async def main() -> tracedjobs.Job:
        job_id = await task.defer_async()
        try:
            async with running_worker(app):
                await anyio.to_thread.run_sync(started.wait, 20)
                changed = await app.job_manager.cancel_job_by_id_async(job_id, abort=abort)
                assert changed is abort
                if abort:
                    status = await app.job_manager.get_job_status_async(job_id)
                    assert status in (tracedjobs.Status.ABORTING, tracedjobs.Status.ABORTED)
                return await wait_for_status(app, job_id, timeout=20)
        finally:
            await app.connector.close_async()

    return anyio.run(main)


def test_abort_cancels_a_running_async_task(app: tracedjobs.App) -> None:
    started = threading.Event()
    cancelled: list[bool] = []

    @app.task(retry=5)
    async def long_async() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    job = run_and_abort(app, long_async, started=started)
    assert cancelled == [True]
    assert job.status == tracedjobs.Status.ABORTED
    assert outcomes(job) == ["aborted"]  # an abort is never retried
    assert event_types(job)[-2:] == ["abort_requested", "aborted"]
    assert job.attempt_records[0].error_type == "tracedjobs.exceptions.JobAborted"


def test_abort_is_seen_by_a_sync_task_that_raises_job_aborted(app: tracedjobs.App) -> None:
    started = threading.Event()
    reasons: list[tracedjobs.AbortReason | None] = []

    @app.task(pass_context=True, retry=5)
    def cooperative(context: tracedjobs.JobContext) -> None:
        reasons.append(context.abort_reason())
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if context.should_abort():
                reasons.append(context.abort_reason())
                raise tracedjobs.JobAborted("stopping as asked")
            time.sleep(0.02)

    job = run_and_abort(app, cooperative, started=started)
    assert reasons == [None, tracedjobs.AbortReason.USER_REQUEST]
    assert job.status == tracedjobs.Status.ABORTED
    assert outcomes(job) == ["aborted"]
    assert job.attempt_records[0].error_message == "stopping as asked"


def test_a_sync_task_failing_after_an_abort_fails_and_is_not_retried(app: tracedjobs.App) -> None:
    """As in Procrastinate, a job asked to abort that ends with an ordinary error has failed;
    unlike Procrastinate, it is not retried: nobody wants a job they aborted back."""
    started = threading.Event()

    @app.task(pass_context=True, retry=5)
    def breaks(context: tracedjobs.JobContext) -> None:
        started.set()
        while not context.should_abort():
            time.sleep(0.02)
        raise RuntimeError("interrupted half-way")

    job = run_and_abort(app, breaks, started=started)
    assert job.status == tracedjobs.Status.FAILED
    assert outcomes(job) == ["failed"]
    attempt = job.attempt_records[0]
    assert attempt.error_type == "RuntimeError"
    assert attempt.error_message == "interrupted half-way"
    assert "RuntimeError: interrupted half-way" in (attempt.traceback or "")
def test_a_sync_task_that_ignores_the_abort_and_returns_succeeds(app: tracedjobs.App) -> None:
    started = threading.Event()
    saw_abort: list[bool] = []

    @app.task(pass_context=True)
    def stubborn(context: tracedjobs.JobContext) -> None:
        started.set()
        deadline = time.monotonic() + 20
        while not context.should_abort() and time.monotonic() < deadline:
            time.sleep(0.02)
        saw_abort.append(context.should_abort())

    job = run_and_abort(app, stubborn, started=started)
    assert saw_abort == [True]
    # The work was done: the job is recorded as it ended, succeeded.
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert event_types(job)[-2:] == ["abort_requested", "succeeded"]


def test_cancel_without_abort_leaves_a_running_job_alone(app: tracedjobs.App) -> None:
    started = threading.Event()
    release = threading.Event()

    @app.task
    def running() -> None:
        started.set()
        release.wait(20)

    original_wait = started.wait

    def wait_then_release(timeout: float) -> bool:
        ok = original_wait(timeout)
        threading.Timer(0.3, release.set).start()
        return ok

    started.wait = wait_then_release  # type: ignore[method-assign]
    job = run_and_abort(app, running, started=started, abort=False)
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert "cancelled" not in event_types(job)


def test_a_job_waiting_for_its_retry_can_be_cancelled(app: tracedjobs.App) -> None:
    @app.task(retry=tracedjobs.RetryStrategy(max_attempts=3, wait=60))
    def fails() -> None:
        raise RuntimeError("try later")

    async def main() -> tracedjobs.Job:
        job_id = await fails.defer_async()
        try:
            async with running_worker(app):
                with anyio.fail_after(20):
                    while True:  # until the first attempt is recorded and the retry scheduled
                        job = await app.job_manager.get_job_async(job_id)
                        if "deferred_for_retry" in event_types(job):
                            break
                        await anyio.sleep(0.03)
                assert await app.job_manager.cancel_job_by_id_async(job_id) is True
            return await app.job_manager.get_job_async(job_id)
        finally:
            await app.connector.close_async()

    job = anyio.run(main)
    assert job.status == tracedjobs.Status.CANCELLED
    assert outcomes(job) == ["retried"]
    assert event_types(job)[-2:] == ["deferred_for_retry", "cancelled"]
