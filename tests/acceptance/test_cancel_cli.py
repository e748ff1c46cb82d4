"""`tracedjobs jobs cancel ID [--abort]` against a real worker process."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import WorkerProcess, run_cli, scalar, wait_until

APP = "tests.apps.basic:app"


def status(db_url: str, job_id: int) -> str:
    return scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,))


def defer(db_url: str, *args: str) -> int:
    result = run_cli(db_url, "defer", "--app", APP, *args)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_cli_cancel_todo_and_abort_running(db_url: str, tmp_path: Path) -> None:
    later = defer(db_url, "record", "--in", "1h")
    result = run_cli(db_url, "jobs", "cancel", str(later))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"job {later}: cancelled"

    worker = WorkerProcess(
        db_url, APP, "--heartbeat-interval", "0.5", "--stalled-timeout", "3",
        log_path=tmp_path / "w.log",
    )
    try:
        running = defer(db_url, "sleep_then_record", '{"seconds": 60}')
        wait_until(lambda: status(db_url, running) == "doing", 30, "the job to start")

        refused = run_cli(db_url, "jobs", "cancel", str(running))
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"tracedjobs: job {running} is doing, nothing to cancel "
            "(use --abort to stop a running job)"
        )

        aborted = run_cli(db_url, "jobs", "cancel", str(running), "--abort")
        assert aborted.returncode == 0, aborted.stderr
        assert aborted.stdout.strip() in (f"job {running}: aborting", f"job {running}: aborted")
        wait_until(lambda: status(db_url, running) == "aborted", 15, "the job to be aborted")
        assert scalar(db_url, "SELECT count(*) FROM test_runs WHERE job_id = %s", (running,)) == 0
        assert scalar(
            db_url, "SELECT outcome FROM tracedjobs_attempts WHERE job_id = %s", (running,)
        ) == "aborted"
    finally:
        worker.stop()
    missing = run_cli(db_url, "jobs", "cancel", "999999")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "tracedjobs: no job with id 999999"
