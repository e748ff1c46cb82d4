"""Seeds 002/003 run verbatim (tests/apps/seeds_retry.py) in a real `tracedjobs worker`."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess, query, run_cli, scalar, wait_until

APP = "tests.apps.seeds_retry:app"
MODULE = "tests.apps.seeds_retry"
FINISHED = ("succeeded", "failed", "cancelled", "aborted")


class Seeds:
    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []

    def worker(self, random_values: str = "0.5") -> WorkerProcess:
        worker = WorkerProcess(
            self.db_url, APP, "--heartbeat-interval", "0.5", "--stalled-timeout", "3",
            log_path=self.tmp_path / f"worker{len(self.workers)}.log", SEEDS_RANDOM=random_values,
        )
        self.workers.append(worker)
        return worker

    def defer(self, task: str) -> int:
        result = run_cli(self.db_url, "defer", "--app", APP, task)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.strip())

    def finished(self, job_id: int, timeout: float = 30) -> str:
        return wait_until(
            lambda: (s := self.status(job_id)) in FINISHED and s, timeout, f"job {job_id} finished"
        )

    def status(self, job_id: int) -> str:
        return scalar(self.db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,))

    def outcomes(self, job_id: int) -> list[str]:
        rows = query(
            self.db_url, "SELECT outcome FROM tracedjobs_attempts WHERE job_id = %s ORDER BY id",
            (job_id,),
        )
        return [r[0] for r in rows]

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.signal(signal.SIGTERM)
                try:
                    worker.wait(15)
                except Exception:
                    pass
            worker.stop()


@pytest.fixture
def seeds(db_url: str, tmp_path: Path) -> Iterator[Seeds]:
    s = Seeds(db_url, tmp_path)
    try:
        yield s
    finally:
        s.stop_all()


def test_retry_5_gives_6_attempts(seeds: Seeds) -> None:
    worker = seeds.worker("0.95")  # random.random() > 0.9: every attempt raises
    job_id = seeds.defer(f"{MODULE}.flaky_task")
    assert seeds.finished(job_id) == "failed"
    assert seeds.outcomes(job_id) == ["retried"] * 5 + ["failed"]
    assert "Hello world" not in worker.output()


def test_retry_5_passes_when_an_attempt_passes(seeds: Seeds) -> None:
    worker = seeds.worker("0.95,0.95,0.1")
    job_id = seeds.defer(f"{MODULE}.flaky_task")
    assert seeds.finished(job_id) == "succeeded"
    assert seeds.outcomes(job_id) == ["retried", "retried", "succeeded"]
    worker.wait_for_output("Hello world")


def test_retry_true_retries_indefinitely(seeds: Seeds) -> None:
    worker = seeds.worker(",".join(["0.95"] * 12 + ["0.1"]))
    job_id = seeds.defer("flaky_task_forever")
    assert seeds.finished(job_id) == "succeeded"
    assert seeds.outcomes(job_id) == ["retried"] * 12 + ["succeeded"]
    worker.wait_for_output("Hello world")


def test_advanced_strategy_task_runs(seeds: Seeds) -> None:
    worker = seeds.worker()
    job_id = seeds.defer(f"{MODULE}.my_other_task")
    assert seeds.finished(job_id) == "succeeded"
    worker.wait_for_output("Hello world")


def test_random_retry_strategy_moves_the_job(seeds: Seeds) -> None:
    seeds.worker()  # all queues, so it follows the job to another_queue
    job_id = seeds.defer("random_retry")
    assert seeds.finished(job_id) == "failed"
    assert seeds.outcomes(job_id) == ["retried", "retried", "retried", "failed"]
    (row,) = query(
        seeds.db_url,
        "SELECT queue_name, priority, lock FROM tracedjobs_jobs WHERE id = %s", (job_id,),
    )
    assert row == ("another_queue", 3, "another_lock")
    gaps = [
        r[0] for r in query(
            seeds.db_url,
            """SELECT extract(epoch FROM started_at - lag(finished_at) OVER (ORDER BY id))
                 FROM tracedjobs_attempts WHERE job_id = %s ORDER BY id""",
            (job_id,),
        )[1:]
    ]
    assert len(gaps) == 3
    assert all(0.05 <= float(g) < 2 for g in gaps), gaps


def test_last_attempt_warning_is_printed_on_the_last_attempt_only(seeds: Seeds) -> None:
    worker = seeds.worker("0.5")  # random.random() < 0.9: every attempt raises
    job_id = seeds.defer(f"{MODULE}.my_task")
    assert seeds.finished(job_id) == "failed"
    assert seeds.outcomes(job_id) == ["retried"] * 10 + ["failed"]
    wait_until(lambda: "attempt 11 failed" in worker.output(), 10, "the last attempt's log line")
    out = worker.output()
    assert out.count("Warning: last attempt!") == 1
    warning = out.index("Warning: last attempt!")
    assert out.index("attempt 10 failed") < warning < out.index("attempt 11 failed")
    assert "; retry in" in out[out.index("attempt 10 failed"):warning]
    assert "; not retried" in out[out.index("attempt 11 failed"):]
