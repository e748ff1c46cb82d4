"""Retrying failed jobs by hand, from Python and the CLI (seed 002, issue 4 items 5 and 9)."""

from __future__ import annotations

import datetime

import anyio
import pytest

import tracedjobs
from tests.helpers import run_cli
from tests.integration.running import event_types, finish, outcomes
from tracedjobs import utils
from tracedjobs.exceptions import InvalidJobState, JobNotFound


def define_fails_once(app: tracedjobs.App, name: str = "fails_once", **options: object):  # type: ignore[no-untyped-def]
    runs: list[int] = []

    @app.task(name=name, pass_context=True, **options)
    def fails_once(context: tracedjobs.JobContext) -> None:
        runs.append(context.job.id)
        if runs.count(context.job.id) == 1:
            raise RuntimeError("integration misconfigured")

    return fails_once, runs


def test_seed_manual_retry_puts_a_failed_job_back_and_keeps_history(app: tracedjobs.App) -> None:
    task, runs = define_fails_once(app)
    (job,) = finish(app, task.defer())
    assert job.status == tracedjobs.Status.FAILED
    history = event_types(job)

    # Seed 002, verbatim:
    app.job_manager.retry_job_by_id(
        job.id, utils.utcnow(), job.priority, job.queue_name, job.lock
    )

    retried = app.job_manager.get_job(job.id)
    assert retried.status == tracedjobs.Status.TODO
    assert event_types(retried) == [*history, "retried"]
    (job,) = finish(app, job.id)
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert runs == [job.id, job.id]
    assert outcomes(job) == ["failed", "succeeded"]
    assert event_types(job) == [*history, "retried", "started", "succeeded"]


def test_seed_manual_retry_async(app: tracedjobs.App) -> None:
    task, _ = define_fails_once(app)
    (job,) = finish(app, task.defer())

    async def main() -> None:
        try:
            # Seed 002, verbatim:
            await app.job_manager.retry_job_by_id_async(
                job.id, utils.utcnow(), job.priority, job.queue_name, job.lock
            )
        finally:
            await app.connector.close_async()

    anyio.run(main)
    assert event_types(app.job_manager.get_job(job.id))[-1] == "retried"
    (job,) = finish(app, job.id)
    assert job.status == tracedjobs.Status.SUCCEEDED


def test_manual_retry_can_move_and_schedule_the_job(app: tracedjobs.App) -> None:
    task, _ = define_fails_once(app)
    (job,) = finish(app, task.defer())
    at = utils.utcnow() + datetime.timedelta(seconds=0.5)
    app.job_manager.retry_job_by_id(job.id, at, 7, "elsewhere", "a-lock")
    moved = app.job_manager.get_job(job.id)
    assert (moved.priority, moved.queue_name, moved.lock) == (7, "elsewhere", "a-lock")
    assert moved.scheduled_at == at
    (job,) = finish(app, job.id, queues=["elsewhere"])
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert job.attempt_records[-1].started_at >= at  # not before the requested time


def test_retrying_a_job_that_is_not_failed_is_a_clear_error(app: tracedjobs.App) -> None:
    @app.task
    def ok() -> None:
        pass

    waiting = ok.defer()
    with pytest.raises(InvalidJobState, match=f"job {waiting} is todo.*only failed jobs"):
        app.job_manager.retry_job_by_id(waiting)
    (done,) = finish(app, ok.defer())
    with pytest.raises(InvalidJobState, match="is succeeded"):
        app.job_manager.retry_job_by_id(done.id, utils.utcnow())
    with pytest.raises(JobNotFound):
        app.job_manager.retry_job_by_id(10_000)
    assert event_types(app.job_manager.get_job(done.id))[-1] == "succeeded"


# -- CLI -------------------------------------------------------------------------------


def test_cli_jobs_retry_by_id(app: tracedjobs.App, db_url: str) -> None:
    task, _ = define_fails_once(app)
    (job,) = finish(app, task.defer())
    result = run_cli(db_url, "jobs", "retry", str(job.id))
    assert result.returncode == 0, result.stderr
    assert "retried 1 job(s)" in result.stdout
    assert app.job_manager.get_job_status(job.id) == tracedjobs.Status.TODO
    (job,) = finish(app, job.id)
    assert job.status == tracedjobs.Status.SUCCEEDED


def test_cli_jobs_retry_of_a_job_that_is_not_failed_fails_in_one_line(
    app: tracedjobs.App, db_url: str
) -> None:
    @app.task
    def ok() -> None:
        pass

    job_id = ok.defer()
    result = run_cli(db_url, "jobs", "retry", str(job_id), "999999")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"tracedjobs: job {job_id} is todo, not failed: only failed jobs can be retried",
        "tracedjobs: no job with id 999999",
    ]
    assert "Traceback" not in result.stderr
    bad = run_cli(db_url, "jobs", "retry", "--failed", str(job_id))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_jobs_retry_failed_with_filters(app: tracedjobs.App, db_url: str) -> None:
    a, _ = define_fails_once(app, name="task_a")
    b, _ = define_fails_once(app, name="task_b")
    a1, a2 = a.defer(), a.configure(queue="other").defer()
    b1 = b.defer()
    finish(app, a1, a2, b1)

    result = run_cli(db_url, "jobs", "retry", "--failed", "--task", "task_a", "--queue", "other")
    assert result.returncode == 0, result.stderr
    assert "retried 1 job(s)" in result.stdout
    status = app.job_manager.get_job_status
    assert (status(a1), status(a2), status(b1)) == ("failed", "todo", "failed")

    result = run_cli(db_url, "jobs", "retry", "--failed", "--since", "1h")
    assert result.returncode == 0, result.stderr
    assert "retried 2 job(s)" in result.stdout
    future = (utils.utcnow() + datetime.timedelta(hours=1)).isoformat()
    result = run_cli(db_url, "jobs", "retry", "--failed", "--since", future)
    assert "retried 0 job(s)" in result.stdout
    jobs = finish(app, a1, a2, b1)
    assert [j.status for j in jobs] == ["succeeded"] * 3


def test_cli_jobs_show_prints_attempts_and_events(app: tracedjobs.App, db_url: str) -> None:
    @app.task(name="show_me", retry=1)
    def show_me() -> None:
        raise ConnectionError("upstream down")

    (job,) = finish(app, show_me.defer(), name="shower")
    result = run_cli(db_url, "jobs", "show", str(job.id))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"job {job.id}" in out and "status=failed" in out and "attempts=2" in out
    for event in ("deferred", "started", "deferred_for_retry", "failed"):
        assert event in out
    assert "#1" in out and "#2" in out and "retried" in out
    assert out.count("ConnectionError: upstream down") >= 2
    assert "worker=shower" in out
    assert "Traceback (most recent call last)" in out
    quiet = run_cli(db_url, "jobs", "show", str(job.id), "--no-traceback")
    assert "Traceback" not in quiet.stdout
