"""Automatic rescue of the jobs of dead (SIGKILLed) and paused (SIGSTOPped) workers."""

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
from tests.helpers import WorkerProcess, query, scalar, wait_until

APP = "tests.apps.liveness:app"


def _started(db_url: str, job_id: int, attempt: int) -> bool:
    return any(label == "start" and a == attempt for label, _, a in runs(db_url, job_id))


def test_sigkilled_workers_job_is_rescued_by_a_peer_and_then_succeeds(
    db_url: str, tmp_path: Path
) -> None:
    job_id = defer(db_url, "slow_first_attempt", seconds=120)
    victim = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "victim.log")
    rescuer = None
    try:
        wait_until(lambda: _started(db_url, job_id, 1), 30, "the first attempt to start")
        victim_id = worker_ids(db_url)[victim.pid]
        rescuer = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "rescuer.log")
        victim.signal(signal.SIGKILL)
        victim.wait()

        wait_until(lambda: status(db_url, job_id) == "succeeded", 30, "the job to succeed")

        assert attempts(db_url, job_id) == [
            (1, "lost", victim_id, "WorkerLost"),
            (2, "succeeded", worker_ids(db_url)[rescuer.pid], None),
        ]
        assert events(db_url, job_id) == [
            "deferred", "started", "lost", "deferred_for_retry", "started", "succeeded",
        ]
        assert [(label, pid) for label, pid, _ in runs(db_url, job_id)] == [
            ("start", victim.pid), ("start", rescuer.pid), ("done", rescuer.pid),
        ]
        # The lost run did not spend the retry budget: only the successful attempt counts.
        assert query(
            db_url, "SELECT attempts, lost_attempts FROM tracedjobs_jobs WHERE id = %s", (job_id,)
        ) == [(1, 1)]
        # The dead worker's row went with the rescue (the claim); the rescuer's row stays.
        assert set(worker_ids(db_url)) == {rescuer.pid}
        # Logged once the rescue pass returns (after a second transaction, for orphan jobs),
        # while the rescuer may already be running the job again: waited for, not read once.
        rescuer.wait_for_output(
            f"job {job_id} (slow_first_attempt) was lost by its worker; now todo", 15
        )
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()


def test_lost_job_of_a_task_without_retries_runs_again(db_url: str, tmp_path: Path) -> None:
    """retry=False and on_lost="retry" (the defaults): a lost run is the worker's failure,
    not the task's, so the job runs again without spending a retry it does not have."""
    job_id = defer(db_url, "slow_no_retry", seconds=120)
    victim = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "victim.log")
    rescuer = None
    try:
        wait_until(lambda: _started(db_url, job_id, 1), 30, "the attempt to start")
        victim.signal(signal.SIGKILL)
        victim.wait()
        rescuer = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "rescuer.log")
        wait_until(lambda: _started(db_url, job_id, 2), 30, "the second run to start")
        assert [a[1] for a in attempts(db_url, job_id)] == ["lost", None]
        assert events(db_url, job_id)[-3:] == ["lost", "deferred_for_retry", "started"]
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()


def test_lost_job_of_an_on_lost_fail_task_fails(db_url: str, tmp_path: Path) -> None:
    job_id = defer(db_url, "slow_on_lost_fail", seconds=120)
    victim = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "victim.log")
    rescuer = None
    try:
        wait_until(lambda: _started(db_url, job_id, 1), 30, "the attempt to start")
        victim.signal(signal.SIGKILL)
        victim.wait()
        rescuer = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "rescuer.log")
        wait_until(lambda: status(db_url, job_id) == "failed", 30, "the job to be failed")
        assert [a[1] for a in attempts(db_url, job_id)] == ["lost"]
        assert events(db_url, job_id)[-2:] == ["lost", "failed"]
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()


def test_rescue_can_be_turned_off(db_url: str, tmp_path: Path) -> None:
    job_id = defer(db_url, "slow_first_attempt", seconds=120)
    victim = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "victim.log")
    other = None
    try:
        wait_until(lambda: _started(db_url, job_id, 1), 30, "the attempt to start")
        victim.signal(signal.SIGKILL)
        victim.wait()
        other = WorkerProcess(db_url, APP, *FAST, "--no-rescue", log_path=tmp_path / "other.log")
        # The dead worker's row is still pruned after the stalled timeout...
        wait_until(lambda: victim.pid not in worker_ids(db_url), 30, "the dead row to be pruned")
        wait_until(lambda: other.pid in worker_ids(db_url), 30, "the other worker to register")
        # ...but its job stays doing, for an operator or a periodic task to retry.
        time.sleep(3)
        assert status(db_url, job_id) == "doing"
        assert [a[1] for a in attempts(db_url, job_id)] == [None]
    finally:
        victim.stop()
        if other is not None:
            other.stop()


@pytest.mark.parametrize(
    ("task", "expected_status", "expected_outcomes"),
    [
        ("slow", "succeeded", ["lost", "succeeded"]),
        ("slow_on_lost_fail", "failed", ["lost"]),
    ],
)
def test_paused_worker_finishing_late_does_not_overwrite_the_rescue(
    db_url: str, tmp_path: Path, task: str, expected_status: str, expected_outcomes: list[str]
) -> None:
    job_id = defer(db_url, task, seconds=4)
    paused = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "paused.log")
    rescuer = None
    try:
        wait_until(lambda: _started(db_url, job_id, 1), 30, "the first attempt to start")
        paused_id = worker_ids(db_url)[paused.pid]
        rescuer = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "rescuer.log")
        paused.signal(signal.SIGSTOP)

        # While it is stopped, the peer declares it dead and rescues its attempt.
        wait_until(lambda: attempts(db_url, job_id)[0][1] == "lost", 30, "the rescue")
        if expected_status == "succeeded":
            wait_until(lambda: _started(db_url, job_id, 2), 30, "the retry to start")
        paused.signal(signal.SIGCONT)

        # The paused worker's sleep is long over: it finishes attempt 1 at once, late.
        late = (
            f"job {job_id} ({task}) attempt 1 finished (succeeded) after this worker was "
            "declared dead"
        )
        paused.wait_for_output(late, 30)
        paused.wait_for_output("late result was discarded")
        wait_until(lambda: status(db_url, job_id) == expected_status, 30, "the final status")
        rows = attempts(db_url, job_id)
        assert [r[1] for r in rows] == expected_outcomes
        assert rows[0][2] == paused_id and rows[0][3] == "WorkerLost"  # not overwritten
        # Exactly one result per attempt, and one final event for the job.
        assert scalar(
            db_url, "SELECT count(*) FROM tracedjobs_attempts WHERE job_id = %s", (job_id,)
        ) == len(expected_outcomes)
        final_events = [e for e in events(db_url, job_id) if e in ("succeeded", "failed")]
        assert final_events == [expected_status]
        assert events(db_url, job_id).count("lost") == 1
        # Side effects: the late attempt ran to its end once (its `done` row is what the
        # user's code did), plus whatever the rescue's retry ran; nothing more.
        seen = sorted(runs(db_url, job_id))
        expected = [("done", paused.pid, 1), ("start", paused.pid, 1)]
        if expected_status == "succeeded":
            expected += [("done", rescuer.pid, 2), ("start", rescuer.pid, 2)]
        assert seen == sorted(expected)
        # The paused worker noticed it had been declared dead and registered again.
        paused.wait_for_output("was declared dead by a peer")
        wait_until(lambda: paused.pid in worker_ids(db_url), 10, "the paused worker to re-register")
    finally:
        paused.stop()  # SIGKILL: ends a stopped process too
        if rescuer is not None:
            rescuer.stop()


@pytest.mark.parametrize("how", ["sigstop", "blocked_event_loop"])
def test_lone_worker_resuming_after_a_long_pause_keeps_its_job(
    db_url: str, tmp_path: Path, how: str
) -> None:
    """No peer declared it dead while it was paused: on resuming, the worker must not rescue
    its own job (that would run it twice); it heartbeats again and warns about the pause."""
    if how == "sigstop":
        job_id = defer(db_url, "slow", seconds=4)
    else:
        job_id = defer(db_url, "blocks_event_loop", seconds=4)
    worker = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "w.log")
    try:
        wait_until(lambda: status(db_url, job_id) == "doing", 30, "the job to start")
        worker_id = worker_ids(db_url)[worker.pid]
        if how == "sigstop":
            worker.signal(signal.SIGSTOP)
            time.sleep(4)
            worker.signal(signal.SIGCONT)
        wait_until(lambda: status(db_url, job_id) == "succeeded", 30, "the job to succeed")
        assert attempts(db_url, job_id) == [(1, "succeeded", worker_id, None)]
        worker.wait_for_output("late: the event loop was blocked")
        assert worker_ids(db_url) == {worker.pid: worker_id}
        assert "was lost by its worker" not in worker.output()
    finally:
        worker.stop()  # SIGKILL: ends a stopped process too


@pytest.mark.parametrize("peer", [True, False])
def test_prefetched_jobs_are_checked_after_a_pause_and_never_run_twice(
    db_url: str, tmp_path: Path, peer: bool
) -> None:
    """A paused worker's prefetched jobs (`--prefetch`) are claimed but not started. With a
    peer, the peer declares it dead, records them lost with the running one and runs them
    again; resumed, the worker checks its prefetched jobs with the database before starting
    any, and starts none of those. Alone, nobody rescued them: it starts them, once."""
    running = defer(db_url, "slow", seconds=3)
    waiting = [defer(db_url, "slow", seconds=0) for _ in range(2)]
    paused = WorkerProcess(db_url, APP, *FAST, "--prefetch", "2", log_path=tmp_path / "p.log")
    rescuer = None
    try:
        wait_until(lambda: _started(db_url, running, 1), 30, "the first job to start")
        wait_until(lambda: all(status(db_url, j) == "doing" for j in waiting), 30, "prefetch")
        paused_id = worker_ids(db_url)[paused.pid]
        if peer:
            rescuer = WorkerProcess(db_url, APP, *FAST, log_path=tmp_path / "r.log")
        paused.signal(signal.SIGSTOP)
        if peer:
            for job_id in waiting:
                wait_until(lambda j=job_id: status(db_url, j) == "succeeded", 30, "the re-run")
        else:
            time.sleep(3)  # longer than the stalled timeout
        paused.signal(signal.SIGCONT)
        wait_until(lambda: status(db_url, running) == "succeeded", 30, "the first job")
        for job_id in waiting:
            wait_until(lambda j=job_id: status(db_url, j) == "succeeded", 30, "every job")
        assert rescuer is not None or paused.pid in worker_ids(db_url)
        for job_id in waiting:
            if rescuer is not None:
                assert [a[1] for a in attempts(db_url, job_id)] == ["lost", "succeeded"]
                # Run once, by the peer: the paused worker started none of them.
                assert runs(db_url, job_id) == [("start", rescuer.pid, 2), ("done", rescuer.pid, 2)]
            else:
                assert attempts(db_url, job_id) == [(1, "succeeded", paused_id, None)]
                assert runs(db_url, job_id) == [("start", paused.pid, 1), ("done", paused.pid, 1)]
        if rescuer is not None:
            paused.wait_for_output("2 prefetched job(s) were rescued by a peer")
        else:
            assert "rescued by a peer" not in paused.output()
    finally:
        paused.stop()  # SIGKILL: ends a stopped process too
        if rescuer is not None:
            rescuer.stop()
