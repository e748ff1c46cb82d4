"""Periodic tasks run by real worker processes: each tick deferred once, no replay."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.acceptance.liveness_helpers import FAST
from tests.helpers import WorkerProcess, query, run_cli, scalar, wait_until

APP = "tests.apps.periodic_app:app"


def _ticks(db_url: str) -> list[tuple[int, int]]:
    """(timestamp, number of runs) for every tick the periodic task ran."""
    return [
        (int(ts), n)
        for ts, n in query(
            db_url,
            "SELECT (value->>'timestamp')::bigint, count(*) FROM test_runs "
            "GROUP BY 1 ORDER BY 1",
        )
    ]


def test_three_workers_defer_each_one_second_tick_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    workers = [
        WorkerProcess(db_url, APP, *FAST, "-c", "2", log_path=tmp_path / f"w{i}.log")
        for i in range(3)
    ]
    try:
        wait_until(
            lambda: scalar(db_url, "SELECT count(*) FROM tracedjobs_workers") == 3,
            30,
            "three workers to register",
        )
        time.sleep(10)
        for w in workers:
            w.signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(30) == 0
    finally:
        for w in workers:
            w.stop()
    ticks = _ticks(db_url)
    assert len(ticks) >= 8, ticks  # about 10 ticks in 10 s, allowing for a loaded machine
    assert all(n == 1 for _, n in ticks), f"a tick ran more than once: {ticks}"
    stamps = [ts for ts, _ in ticks]
    assert stamps == list(range(stamps[0], stamps[-1] + 1)), f"a tick was skipped: {stamps}"
    # Each run had the periodic kwargs and its tick as `timestamp`; one tick row per job.
    jobs = scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE task_name = 'tick'")
    tick_rows = scalar(db_url, "SELECT count(*) FROM tracedjobs_periodic_ticks")
    assert jobs == tick_rows >= len(ticks)
    assert query(db_url, "SELECT DISTINCT label FROM test_runs") == [("cron",)]
    # The work was shared: more than one worker deferred or ran ticks.
    assert scalar(db_url, "SELECT count(DISTINCT pid) FROM test_runs") >= 2


def _run_for(db_url: str, tmp_path: Path, name: str, seconds: float, *args: str) -> None:
    worker = WorkerProcess(db_url, APP, *FAST, *args, log_path=tmp_path / f"{name}.log")
    try:
        wait_until(lambda: worker.pid in {r[0] for r in query(
            db_url, "SELECT pid FROM tracedjobs_workers")}, 30, "the worker to register")
        time.sleep(seconds)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.stop()


def test_ticks_missed_while_no_worker_ran_are_not_replayed(db_url: str, tmp_path: Path) -> None:
    _run_for(db_url, tmp_path, "first", 2)
    stopped_at = time.time()
    time.sleep(4)
    _run_for(db_url, tmp_path, "second", 2)
    stamps = [ts for ts, _ in _ticks(db_url)]
    gap = [ts for ts in stamps if stopped_at + 0.5 < ts < stopped_at + 3]
    assert stamps and gap == [], f"ticks of the downtime were replayed: {stamps}"


def test_catch_up_window_replays_recently_missed_ticks(db_url: str, tmp_path: Path) -> None:
    _run_for(db_url, tmp_path, "first", 2)
    stopped_at = time.time()
    time.sleep(4)
    _run_for(db_url, tmp_path, "second", 2, "--periodic-catch-up", "30")
    stamps = [ts for ts, _ in _ticks(db_url)]
    assert [ts for ts in stamps if stopped_at + 0.5 < ts < stopped_at + 3], stamps
    assert len(stamps) == len(set(stamps))
    # Ticks already deferred by the first run are not deferred again.
    assert stamps == list(range(stamps[0], stamps[-1] + 1)), stamps


def test_worker_with_a_bad_cron_expression_fails_at_import_with_one_line(db_url: str) -> None:
    result = run_cli(db_url, "worker", "--app", "tests.apps.bad_cron:app", "--one-shot")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "invalid cron expression 'every 5 minutes'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


SEED_APP = "tests.apps.seed_stalled:app"


def test_seed_retry_stalled_jobs_periodic_task_retries_a_killed_workers_job(
    db_url: str, tmp_path: Path
) -> None:
    """Seed 000: the documented `retry_stalled_jobs` task, run verbatim by a second worker.

    Automatic rescue is off on both workers so that the seed's task is what retries the job.
    """
    from tests.acceptance.liveness_helpers import attempts, defer, events, runs, status, worker_ids

    job_id = defer(db_url, "long_job", seconds=120)
    victim = WorkerProcess(db_url, SEED_APP, *FAST, "--no-rescue", log_path=tmp_path / "v.log")
    survivor = None
    try:
        wait_until(lambda: runs(db_url, job_id), 30, "the long job to start")
        victim_id = worker_ids(db_url)[victim.pid]
        victim.signal(signal.SIGKILL)
        victim.wait()
        survivor = WorkerProcess(
            db_url, SEED_APP, *FAST, "--no-rescue", log_path=tmp_path / "s.log"
        )
        wait_until(lambda: status(db_url, job_id) == "succeeded", 60, "the job to succeed")
        survivor_id = worker_ids(db_url)[survivor.pid]
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()

    assert attempts(db_url, job_id) == [
        (1, "lost", victim_id, "WorkerLost"),
        (2, "succeeded", survivor_id, None),
    ]
    # Its history tells the story: started, lost, retried (by the periodic task), succeeded.
    assert events(db_url, job_id) == [
        "deferred", "started", "lost", "retried", "started", "succeeded",
    ]
    assert [(label, pid) for label, pid, _ in runs(db_url, job_id)] == [
        ("start", victim.pid), ("start", survivor.pid), ("done", survivor.pid),
    ]
    # The retry was done by a run of the seed's periodic task on the survivor.
    ran = query(
        db_url,
        "SELECT a.worker_id::text FROM tracedjobs_jobs j "
        "JOIN tracedjobs_attempts a ON a.job_id = j.id "
        "WHERE j.task_name = 'tests.apps.seed_stalled.retry_stalled_jobs' "
        "AND a.outcome = 'succeeded'",
    )
    assert (survivor_id,) in ran
