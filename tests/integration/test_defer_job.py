"""`raise tracedjobs.DeferJob(...)`: run again later without a failure (§4, issue 4 item 6)."""

from __future__ import annotations

import pytest

import tracedjobs
from tests.integration.running import event_types, finish, gaps, outcomes


@pytest.mark.parametrize("is_async", [False, True])
def test_defer_job_reruns_later_without_counting_a_failure(
    app: tracedjobs.App, is_async: bool
) -> None:
    seen: list[int] = []

    def body(context: tracedjobs.JobContext) -> None:
        seen.append(context.job.attempts)
        if len(seen) < 3:
            raise tracedjobs.DeferJob(delay=0.3)

    if is_async:

        @app.task(pass_context=True, name="deferring")
        async def deferring_async(context: tracedjobs.JobContext) -> None:
            body(context)

        task = deferring_async
    else:
        task = app.task(pass_context=True, name="deferring")(body)

    (job,) = finish(app, task.defer())
    assert seen == [0, 0, 0]  # deferrals are not attempts
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert job.attempts == 1
    assert outcomes(job) == ["deferred", "deferred", "succeeded"]
    assert event_types(job) == [
        "deferred",
        "started", "rescheduled",
        "started", "rescheduled",
        "started", "succeeded",
    ]
    assert all(a.error_type is None for a in job.attempt_records)
    for gap in gaps(job):
        assert 0.3 <= gap < 1.8


def test_defer_job_does_not_use_up_retries(app: tracedjobs.App) -> None:
    runs: list[int] = []

    @app.task(retry=0)
    def no_retries() -> None:
        runs.append(1)
        if len(runs) < 4:
            raise tracedjobs.DeferJob(delay=0.05)

    (job,) = finish(app, no_retries.defer())
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert outcomes(job) == ["deferred"] * 3 + ["succeeded"]


def test_defer_job_with_increment_attempts_counts_the_attempt(app: tracedjobs.App) -> None:
    seen: list[int] = []

    @app.task(pass_context=True)
    def counted(context: tracedjobs.JobContext) -> None:
        seen.append(context.job.attempts)
        if len(seen) < 3:
            raise tracedjobs.DeferJob(delay=0, increment_attempts=True)

    (job,) = finish(app, counted.defer())
    assert seen == [0, 1, 2]
    assert job.attempts == 3
    assert outcomes(job) == ["deferred", "deferred", "succeeded"]
