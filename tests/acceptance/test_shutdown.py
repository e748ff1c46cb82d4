"""Shutdown on SIGTERM/SIGINT: the first signal drains, a second one exits at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.acceptance.liveness_helpers import (
    FAST,
    attempts,
    defer,
    events,
    runs,
    status,
    worker_ids,
)
from tests.helpers import WorkerProcess, wait_until

APP = "tests.apps.liveness:app"


def _started(db_url: str, job_id: int, attempt: int = 1) -> bool:
    return any(label == "start" and a == attempt for label, _, a in runs(db_url, job_id))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_lets_the_running_job_finish_then_exits_0_without_a_worker_row(
    db_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    job_id = defer(db_url, "slow", seconds=2)
    worker = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "w.log")
    try:
        wait_until(lambda: _started(db_url, job_id), 30, "the job to start")
        assert worker.pid in worker_ids(db_url)
        worker.signal(signum)
        worker.wait_for_output(f"received {signum.name}: stopping, waiting for 1 running job(s)")
        # Fetching has stopped: a job deferred now is left for another worker.
        later = defer(db_url, "slow", seconds=0)

        assert worker.wait(30) == 0
        assert status(db_url, job_id) == "succeeded"
        assert [a[1] for a in attempts(db_url, job_id)] == ["succeeded"]
        assert status(db_url, later) == "todo"
        assert worker_ids(db_url) == {}
        out = worker.output()
        assert "stopped after 1 jobs" in out
        assert "exiting at once" not in out
        assert "Traceback" not in out
    finally:
        worker.stop()


def test_idle_worker_exits_0_at_once_on_sigterm(db_url: str, tmp_path: Path) -> None:
    worker = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "w.log")
    try:
        wait_until(lambda: worker.pid in worker_ids(db_url), 30, "the worker to register")
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert worker_ids(db_url) == {}
    finally:
        worker.stop()


def test_second_signal_exits_at_once_and_the_job_is_rescued_later(
    db_url: str, tmp_path: Path
) -> None:
    job_id = defer(db_url, "slow_first_attempt", seconds=120)
    worker = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "w.log")
    other = None
    try:
        wait_until(lambda: _started(db_url, job_id), 30, "the job to start")
        worker_id = worker_ids(db_url)[worker.pid]
        worker.signal(signal.SIGTERM)
        worker.wait_for_output("received SIGTERM: stopping")
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(10)
        assert time.monotonic() - started < 5, "the second signal must not wait for the job"
        assert code != 0
        assert "SIGTERM: exiting at once; 1 job(s) left in doing" in worker.output()
        # The job is left doing, its worker row in place: nothing deleted it.
        assert status(db_url, job_id) == "doing"
        assert worker_ids(db_url) == {worker.pid: worker_id}

        other = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "other.log")
        wait_until(lambda: status(db_url, job_id) == "succeeded", 30, "the rescue and retry")
        assert [a[1] for a in attempts(db_url, job_id)] == ["lost", "succeeded"]
        assert "lost" in events(db_url, job_id)
        assert worker.pid not in worker_ids(db_url)
    finally:
        worker.stop()
        if other is not None:
            other.stop()


@pytest.mark.parametrize(
    ("task", "final", "outcome"),
    [("slow_no_retry", "aborted", "aborted"), ("slow_first_attempt", "todo", "aborted")],
)
def test_graceful_timeout_aborts_running_jobs_records_them_and_exits(
    db_url: str, tmp_path: Path, task: str, final: str, outcome: str
) -> None:
    """As Procrastinate's shutdown_graceful_timeout: past it, running jobs are aborted and
    recorded (a task with retries left is retried), then the worker exits cleanly."""
    job_id = defer(db_url, task, seconds=120)
    worker = WorkerProcess(
        db_url, APP, *FAST, "--shutdown-timeout", "1", log_path=tmp_path / "w.log"
    )
    try:
        wait_until(lambda: _started(db_url, job_id), 30, "the job to start")
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert "still running after the graceful timeout of 1.0 s; aborting them" in (
            worker.output()
        )
        assert status(db_url, job_id) == final
        assert [a[1] for a in attempts(db_url, job_id)] == [outcome]
        assert worker_ids(db_url) == {}  # unregistered
    finally:
        worker.stop()
