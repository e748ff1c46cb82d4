"""Automatic retries with a real worker on a real database (§4, issue 4 items 1–4, 9)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import tracedjobs
from tests.integration.running import event_types, finish, gaps, outcomes


def test_retry_n_makes_n_plus_one_attempts_then_fails(app: tracedjobs.App) -> None:
    seen: list[int] = []

    @app.task(retry=2, pass_context=True)
    def always_fails(context: tracedjobs.JobContext) -> None:
        seen.append(context.job.attempts)
        raise RuntimeError(f"boom #{context.job.attempts}")

    (job,) = finish(app, always_fails.defer())
    assert seen == [0, 1, 2]  # context.job.attempts counts the earlier attempts
    assert job.status == tracedjobs.Status.FAILED
    assert job.attempts == 3
    assert outcomes(job) == ["retried", "retried", "failed"]
    assert event_types(job) == [
        "deferred",
        "started", "deferred_for_retry",
        "started", "deferred_for_retry",
        "started", "failed",
    ]
    assert [a.attempt for a in job.attempt_records] == [1, 2, 3]


def test_each_attempt_records_error_duration_and_worker(app: tracedjobs.App) -> None:
    @app.task(retry=1, pass_context=True)
    def fails(context: tracedjobs.JobContext) -> None:
        raise ValueError(f"bad value on attempt {context.job.attempts + 1}")

    (job,) = finish(app, fails.defer(), name="retry-worker")
    assert len(job.attempt_records) == 2
    for number, attempt in enumerate(job.attempt_records, start=1):
        assert attempt.error_type == "ValueError"
        assert attempt.error_message == f"bad value on attempt {number}"
        assert attempt.traceback is not None
        assert "in fails" in attempt.traceback and "ValueError: bad value" in attempt.traceback
        assert attempt.duration is not None and 0 <= attempt.duration < 5
        assert attempt.worker_name == "retry-worker"
        assert attempt.worker_id is not None
        assert attempt.finished_at is not None and attempt.finished_at >= attempt.started_at


def test_retry_true_retries_until_the_job_passes(app: tracedjobs.App) -> None:
    seen: list[int] = []

    @app.task(retry=True, pass_context=True)
    async def flaky(context: tracedjobs.JobContext) -> None:
        seen.append(context.job.attempts)
        if context.job.attempts < 7:
            raise ConnectionError("not yet")

    (job,) = finish(app, flaky.defer())
    assert seen == list(range(8))
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert outcomes(job) == ["retried"] * 7 + ["succeeded"]


@pytest.mark.parametrize("retry", [False, 0])
def test_retry_false_or_zero_fails_at_once(app: tracedjobs.App, retry: Any) -> None:
    @app.task(retry=retry)
    def fails() -> None:
        raise RuntimeError("once")

    (job,) = finish(app, fails.defer())
    assert job.status == tracedjobs.Status.FAILED
    assert outcomes(job) == ["failed"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_attempts": 3, "linear_wait": 0.2}, [0.2, 0.4, 0.6]),
        ({"max_attempts": 2, "wait": 0.3}, [0.3, 0.3]),
        ({"max_attempts": 2, "exponential_wait": 0.7}, [0.7, 0.49]),
        ({"max_attempts": 2, "wait": 0.1, "linear_wait": 0.1, "exponential_wait": 0.5}, [0.7, 0.55]),
    ],
)
def test_measured_delays_between_attempts_follow_the_strategy(
    app: tracedjobs.App, options: dict[str, float], expected: list[float]
) -> None:
    @app.task(retry=tracedjobs.RetryStrategy(**options))
    async def fails() -> None:
        raise RuntimeError("again")

    (job,) = finish(app, fails.defer())
    measured = gaps(job)
    assert len(measured) == len(expected)
    for got, want in zip(measured, expected, strict=True):
        # Never early (the claim honours scheduled_at on the database clock); late by at
        # most a generous margin on a busy machine.
        assert want <= got < want + 1.5, (measured, expected)
    scheduled = [e.detail["scheduled_at"] for e in job.events if e.type == "deferred_for_retry"]
    assert len(scheduled) == len(expected)


def test_retry_exceptions_outside_the_set_fail_at_once(app: tracedjobs.App) -> None:
    strategy = tracedjobs.RetryStrategy(max_attempts=5, retry_exceptions={ConnectionError})

    @app.task(retry=strategy, pass_context=True)
    def picky(context: tracedjobs.JobContext, error: str) -> None:
        if context.job.attempts == 0 or error == "ValueError":
            raise {"ValueError": ValueError, "ConnectionError": ConnectionError}[error](error)

    not_retried, retried = finish(app, picky.defer(error="ValueError"), picky.defer(error="ConnectionError"))
    assert outcomes(not_retried) == ["failed"]
    assert not_retried.status == tracedjobs.Status.FAILED
    assert outcomes(retried) == ["retried", "succeeded"]


class MoveEachRetry(tracedjobs.BaseRetryStrategy):
    """Retry twice, each time one priority higher, on another queue and lock, 0.1 s later."""

    def get_retry_decision(
        self, *, exception: BaseException, job: tracedjobs.Job
    ) -> tracedjobs.RetryDecision | None:
        if job.attempts >= 2:
            return None
        return tracedjobs.RetryDecision(
            retry_in={"seconds": 0.1},
            priority=job.priority + 1,
            queue=f"retry-{job.attempts + 1}",
            lock="moved-lock",
        )


def test_a_retry_decision_moves_priority_queue_and_lock(app: tracedjobs.App) -> None:
    seen: list[tuple[int, str, int, str | None]] = []

    @app.task(retry=MoveEachRetry(), pass_context=True, queue="first")
    def moving(context: tracedjobs.JobContext) -> None:
        job = context.job
        seen.append((job.attempts, job.queue_name, job.priority, job.lock))
        raise RuntimeError("move me")

    (job,) = finish(app, moving.defer())
    assert seen == [
        (0, "first", 0, None),
        (1, "retry-1", 1, "moved-lock"),
        (2, "retry-2", 2, "moved-lock"),
    ]
    assert (job.status, job.queue_name, job.priority, job.lock) == ("failed", "retry-2", 2, "moved-lock")
    assert all(g >= 0.1 for g in gaps(job))


def test_retry_at_schedules_the_retry_at_that_time(app: tracedjobs.App) -> None:
    class At(tracedjobs.BaseRetryStrategy):
        def get_retry_decision(self, *, exception, job):  # type: ignore[no-untyped-def]
            if job.attempts:
                return None
            at = tracedjobs.utils.utcnow() + datetime.timedelta(seconds=0.4)
            return tracedjobs.RetryDecision(retry_at=at)

    @app.task(retry=At())
    def fails() -> None:
        raise RuntimeError("later")

    (job,) = finish(app, fails.defer())
    assert outcomes(job) == ["retried", "failed"]
    assert 0.35 <= gaps(job)[0] < 2  # retry_at was computed on this clock, a little earlier


@pytest.mark.parametrize("kind", ["none", "should_retry_false"])
def test_none_and_should_retry_false_both_end_the_job_failed(app: tracedjobs.App, kind: str) -> None:
    class Stop(tracedjobs.BaseRetryStrategy):
        def get_retry_decision(self, *, exception, job):  # type: ignore[no-untyped-def]
            if kind == "none":
                return None
            return tracedjobs.RetryDecision(should_retry=False, retry_in={"seconds": 0})

    @app.task(retry=Stop())
    def fails() -> None:
        raise RuntimeError("stop")

    (job,) = finish(app, fails.defer())
    assert job.status == tracedjobs.Status.FAILED
    assert outcomes(job) == ["failed"]
    assert event_types(job)[-1] == "failed"


def test_legacy_get_schedule_in_still_drives_retries(app: tracedjobs.App) -> None:
    class Legacy(tracedjobs.BaseRetryStrategy):
        def get_schedule_in(self, *, exception, attempts):  # type: ignore[no-untyped-def]
            return 0.2 if attempts < 2 else None

    with pytest.warns(DeprecationWarning, match="get_schedule_in"):

        @app.task(retry=Legacy())
        def fails() -> None:
            raise RuntimeError("legacy")

    (job,) = finish(app, fails.defer())
    assert outcomes(job) == ["retried", "retried", "failed"]
    assert all(0.2 <= g < 1.7 for g in gaps(job))


@pytest.mark.parametrize("broken", ["raises", "bad_retry_in"])
def test_a_broken_strategy_fails_the_job_and_the_worker_carries_on(
    app: tracedjobs.App, broken: str
) -> None:
    class Broken(tracedjobs.BaseRetryStrategy):
        def get_retry_decision(self, *, exception, job):  # type: ignore[no-untyped-def]
            if broken == "raises":
                raise KeyError("strategy bug")
            return tracedjobs.RetryDecision(retry_in={"secs": 1})

    @app.task(retry=Broken())
    def fails() -> None:
        raise RuntimeError("task error")

    @app.task
    def fine() -> None:
        pass

    failed, succeeded = finish(app, fails.defer(), fine.defer())
    assert outcomes(failed) == ["failed"]
    assert failed.attempt_records[0].error_type == "RuntimeError"
    assert succeeded.status == tracedjobs.Status.SUCCEEDED


# Seed 002's strategy, verbatim but for the import and `self.max_attempts`, lives in the
# seed app module; its subclass shortens the waits so the test stays fast.
import tracedjobs as procrastinate  # noqa: E402 - the seeds' spelling
from tests.apps.seeds_retry import FastRandomRetryStrategy  # noqa: E402


def test_seed_random_retry_strategy_with_a_real_worker(app: tracedjobs.App) -> None:
    @app.task(retry=FastRandomRetryStrategy(), pass_context=True)
    def flaky(context: tracedjobs.JobContext) -> None:
        raise Exception("Who could have seen this coming?")

    (job,) = finish(app, flaky.defer())
    assert outcomes(job) == ["retried", "retried", "retried", "failed"]
    assert (job.queue_name, job.priority, job.lock) == ("another_queue", 3, "another_lock")
    assert all(0.05 <= g < 1.7 for g in gaps(job))


def test_last_attempt_check_is_true_on_the_last_attempt_only(app: tracedjobs.App) -> None:
    last: list[bool] = []

    # Seed 002 "Knowing whether a job is on its last attempt", with its mixed tab/space
    # indentation made consistent and print replaced by recording.
    @app.task(retry=10, pass_context=True)
    def my_task(job_context: procrastinate.JobContext) -> None:
        job = job_context.job
        task = job_context.task
        last.append(task.retry.get_retry_decision(exception=Exception(), job=job) is None)
        raise Exception

    (job,) = finish(app, my_task.defer())
    assert last == [False] * 10 + [True]
    assert job.attempts == 11 and job.status == tracedjobs.Status.FAILED


def test_a_retry_blocked_by_a_waiting_job_with_its_queueing_lock_fails(
    app: tracedjobs.App,
) -> None:
    """At most one waiting job per queueing lock: a retry would make a second one, so the
    attempt ends failed, says why, and the job deferred meanwhile runs. A retry with the lock
    free, and a failing job without a queueing lock, retry as usual."""
    ran: list[str] = []

    @app.task(retry=1, queueing_lock="digest", pass_context=True)
    def digest(context: tracedjobs.JobContext, label: str) -> None:
        ran.append(label)
        if label == "first" and context.job.attempts == 0:
            digest.defer(label="second")  # allowed: "first" is running, not waiting
            raise RuntimeError("first attempt fails")

    @app.task(retry=1, queueing_lock="alone", pass_context=True)
    def alone(context: tracedjobs.JobContext) -> None:
        if context.job.attempts == 0:
            raise RuntimeError("retried: no other job holds its queueing lock")

    @app.task(retry=1, pass_context=True)
    def plain(context: tracedjobs.JobContext) -> None:
        if context.job.attempts == 0:
            raise RuntimeError("retried")

    first, lone, other = digest.defer(label="first"), alone.defer(), plain.defer()
    job, lone_job, other_job = finish(app, first, lone, other)
    assert job.status == tracedjobs.Status.FAILED
    assert outcomes(job) == ["failed"]
    assert job.events[-1].type == "failed"
    assert job.events[-1].detail is not None
    assert job.events[-1].detail["reason"] == "queueing lock taken by a waiting job"
    (second,) = [j for j in app.job_manager.list_jobs(queueing_lock="digest") if j.id != first]
    finish(app, second.id)
    assert ran == ["first", "second"]
    for retried in (lone_job, other_job):
        assert retried.status == tracedjobs.Status.SUCCEEDED
        assert outcomes(retried) == ["retried", "succeeded"]
