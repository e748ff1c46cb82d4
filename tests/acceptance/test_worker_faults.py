"""Every fault of issue 10, proven on real worker processes against a real PostgreSQL.

Black-box: tests look only at the database (jobs, attempts, events, workers, test_runs),
at process liveness, exit status and output, and at wall time with generous bounds. The
faults are injected where they happen in production: by task code, by the database
(revoked privileges, read-only sessions, an exclusive lock, values it refuses), by an
unreachable OTLP endpoint, and by the URL a user types.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import hashlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import tracedjobs
from tests.acceptance.liveness_helpers import events
from tests.helpers import ROOT, WorkerProcess, cli_env, query, run_cli, scalar, wait_until

pytestmark = pytest.mark.slow

APP = "tests.apps.faults:app"
FINAL = ("succeeded", "failed", "cancelled", "aborted")


# -- helpers ------------------------------------------------------------------------------


def defer_jobs(db_url: str, task_name: str, *kwargs: dict[str, Any], **options: Any) -> list[int]:
    """Defer one job per kwargs dict by task name (without importing the worker's app)."""
    app = tracedjobs.App(database_url=db_url)
    try:
        app.task(name=task_name)(lambda **_: None)
        deferrer = app.configure_task(task_name, **options)
        return [deferrer.defer(**kw) for kw in kwargs]
    finally:
        app.close()


def statuses(db_url: str, job_ids: Sequence[int]) -> dict[int, str]:
    rows = query(
        db_url, "SELECT id, status FROM tracedjobs_jobs WHERE id = ANY(%s)", (list(job_ids),)
    )
    return dict(rows)


def attempt_rows(db_url: str, job_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(
            "SELECT attempt, outcome, error_type, error_message, started_at, finished_at, "
            "duration FROM tracedjobs_attempts WHERE job_id = %s ORDER BY id",
            (job_id,),
        ).fetchall()


def wait_settled(
    db_url: str, job_ids: Sequence[int], worker: WorkerProcess, timeout: float
) -> dict[int, str]:
    """Wait until every job has finished or the worker has exited; the statuses then."""

    def settled() -> bool:
        if worker.proc.poll() is not None:
            return True
        return all(s in FINAL for s in statuses(db_url, job_ids).values())

    with contextlib.suppress(AssertionError):
        wait_until(settled, timeout, "the jobs to finish")
    return statuses(db_url, job_ids)


def assert_alive(worker: WorkerProcess) -> None:
    code = worker.proc.poll()
    assert code is None, (
        f"the worker exited with status {code}; its output ends:\n{worker.output()[-3000:]}"
    )


def worker_row(db_url: str, pid: int) -> tuple[Any, ...] | None:
    """(worker id, last heartbeat) of the worker process ``pid``, None without a row."""
    rows = query(
        db_url, "SELECT id::text, last_heartbeat_at FROM tracedjobs_workers WHERE pid = %s", (pid,)
    )
    return rows[0] if rows else None


def worker_id_of(db_url: str, pid: int) -> str | None:
    row = worker_row(db_url, pid)
    return row[0] if row else None


def heartbeat_of(db_url: str, pid: int) -> datetime.datetime | None:
    row = worker_row(db_url, pid)
    return row[1] if row else None


def run_labels(db_url: str, job_id: int) -> list[str]:
    rows = query(db_url, "SELECT label FROM test_runs WHERE job_id = %s ORDER BY id", (job_id,))
    return [r[0] for r in rows]


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_conninfo(url: str, **changes: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    return make_conninfo(**{**params, **changes})


def stop_cleanly(worker: WorkerProcess, timeout: float = 15) -> int:
    worker.signal(signal.SIGTERM)
    return worker.wait(timeout)


# -- 1, 2: a task raising a BaseException, or an exception that cannot be printed ---------


@pytest.mark.parametrize(
    ("task", "error_type"),
    [
        ("raise_keyboard_interrupt", "KeyboardInterrupt"),  # async task
        ("raise_keyboard_interrupt_sync", "KeyboardInterrupt"),
        ("raise_system_exit", "SystemExit"),  # sync task
        ("raise_system_exit_async", "SystemExit"),
        ("raise_bad_str", "BadStr"),  # its __str__ and __repr__ raise
    ],
)
def test_task_raising_a_base_exception_fails_its_attempt_and_the_worker_goes_on(
    db_url: str, tmp_path: Path, task: str, error_type: str
) -> None:
    # A job running beside the bad one, the bad one, then normal jobs queued behind it.
    beside = defer_jobs(db_url, "ok", {"label": "beside", "sleep": 1.0})
    bad = defer_jobs(db_url, task, {})[0]
    behind = defer_jobs(db_url, "ok", *({"label": f"behind{i}"} for i in range(4)))
    everything = [*beside, bad, *behind]
    worker = WorkerProcess(
        db_url, APP, "--concurrency", "2", "--polling-interval", "1", log_path=tmp_path / "w.log"
    )
    try:
        final = wait_settled(db_url, everything, worker, 30)
        assert_alive(worker)
        assert final[bad] == "failed", final
        rows = attempt_rows(db_url, bad)
        assert [r["outcome"] for r in rows] == ["failed"], rows  # no retry: the task has none
        assert rows[0]["error_type"] and rows[0]["error_type"].endswith(error_type), rows
        assert events(db_url, bad)[-1] == "failed"
        # The job running beside it was not cancelled; the ones behind it ran.
        assert {final[j] for j in [*beside, *behind]} == {"succeeded"}, final
        assert [r["outcome"] for r in attempt_rows(db_url, beside[0])] == ["succeeded"]
        assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'doing'") == 0
        # Still alive and still working: a job deferred now runs too.
        later = defer_jobs(db_url, "ok", {"label": "later"})[0]
        wait_until(lambda: statuses(db_url, [later])[later] in FINAL, 20, "the later job")
        assert statuses(db_url, [later])[later] == "succeeded"
        assert_alive(worker)
        assert stop_cleanly(worker) == 0
    finally:
        worker.stop()


# -- 4: one result the database refuses -------------------------------------------------


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("refused_queue", r"NUL|0x00"),  # a retry into a queue name holding "\x00"
        ("refused_lock", r"NUL|0x00"),  # a retry under a lock holding "\x00"
        ("refused_priority", r"out of range"),  # a retry at priority 2**40 (int4 column)
    ],
)
def test_a_result_the_database_refuses_fails_that_job_only(
    db_url: str, tmp_path: Path, task: str, reason: str
) -> None:
    worker = WorkerProcess(
        db_url, APP, "--concurrency", "4", "--polling-interval", "1", log_path=tmp_path / "w.log"
    )
    try:
        wait_until(lambda: worker_row(db_url, worker.pid), 30, "the worker to register")
        until = time.time() + 2.0  # all four are claimed at once, then end together
        good = defer_jobs(db_url, "ok_at", *({"until": until, "label": f"g{i}"} for i in range(3)))
        bad = defer_jobs(db_url, task, {"until": until})[0]
        batch = [*good, bad]
        final = wait_settled(db_url, batch, worker, 25)
        assert_alive(worker)
        # All four ran at once, so their results were written together.
        started = query(
            db_url,
            "SELECT count(*) FROM tracedjobs_attempts WHERE job_id = ANY(%s) "
            "AND started_at < to_timestamp(%s)",
            (batch, until),
        )[0][0]
        assert started == 4, "the batch did not run together: the test proves nothing"
        assert final[bad] == "failed", (final, worker.output()[-2000:])
        rows = attempt_rows(db_url, bad)
        assert [r["outcome"] for r in rows] == ["failed"], rows
        message = f"{rows[0]['error_type']}: {rows[0]['error_message']}"
        assert re.search(reason, message, re.IGNORECASE), (
            f"the error should say what the database refused; it is {message!r}"
        )
        assert events(db_url, bad)[-1] == "failed"
        assert {final[j] for j in good} == {"succeeded"}, final
        for job_id in good:
            assert [r["outcome"] for r in attempt_rows(db_url, job_id)] == ["succeeded"]
            assert run_labels(db_url, job_id) != []
        # The worker goes on claiming.
        more = defer_jobs(db_url, "ok", {"label": "m1"}, {"label": "m2"})
        wait_until(lambda: set(statuses(db_url, more).values()) <= set(FINAL), 20, "the next jobs")
        assert set(statuses(db_url, more).values()) == {"succeeded"}
        assert_alive(worker)
    finally:
        worker.stop()


# -- 3: a side loop failing with a non-connection database error ------------------------


@pytest.fixture
def limited_role(db_url: str) -> Iterator[tuple[str, str]]:
    """A non-superuser LOGIN role with rights on the tracedjobs tables; (name, its URL)."""
    role = f"tj_faults_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(role)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        for what in ("TABLES", "SEQUENCES", "FUNCTIONS"):
            conn.execute(
                sql.SQL("GRANT ALL ON ALL {} IN SCHEMA public TO {}").format(sql.SQL(what), ident)
            )
    try:
        yield role, with_conninfo(db_url, user=role)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))


# (statement that injects the fault, statement that lifts it); {} is the role. Sessions
# take `default_transaction_read_only` when they open: the worker's are ended both times.
SIDE_LOOP_FAULTS = {
    # The heartbeat's UPDATE fails with InsufficientPrivilege.
    "revoked_update": (
        "REVOKE UPDATE ON tracedjobs_workers FROM {}",
        "GRANT UPDATE ON tracedjobs_workers TO {}",
    ),
    # Every new session is read-only (ReadOnlySqlTransaction), as after a fail-over.
    "read_only": (
        "ALTER ROLE {} SET default_transaction_read_only = on",
        "ALTER ROLE {} RESET default_transaction_read_only",
    ),
}


def _as_admin(db_url: str, statement: str, role: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL(statement).format(sql.Identifier(role)))
        if "default_transaction_read_only" in statement:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = %s AND datname = current_database()",
                (role,),
            )


@pytest.mark.parametrize("fault", sorted(SIDE_LOOP_FAULTS))
def test_side_loop_database_error_cancels_no_job_and_heartbeats_resume(
    db_url: str, tmp_path: Path, limited_role: tuple[str, str], fault: str
) -> None:
    role, role_url = limited_role
    inject, lift = SIDE_LOOP_FAULTS[fault]
    job_id = defer_jobs(db_url, "sleep_record", {"seconds": 6.0})[0]
    worker = WorkerProcess(
        role_url,
        APP,
        "--heartbeat-interval", "0.5", "--stalled-timeout", "10", "--polling-interval", "1",
        log_path=tmp_path / "w.log",
    )  # fmt: skip
    try:
        wait_until(lambda: "start" in run_labels(db_url, job_id), 30, "the long job to start")
        before = heartbeat_of(db_url, worker.pid)
        wait_until(lambda: heartbeat_of(db_url, worker.pid) != before, 10, "a heartbeat")

        _as_admin(db_url, inject, role)
        time.sleep(1.0)  # a heartbeat in flight may still land
        frozen = heartbeat_of(db_url, worker.pid)
        time.sleep(2.0)  # four heartbeat intervals
        assert heartbeat_of(db_url, worker.pid) == frozen, "the fault did not stop heartbeats"
        assert_alive(worker)

        _as_admin(db_url, lift, role)
        wait_until(
            lambda: worker.proc.poll() is not None or heartbeat_of(db_url, worker.pid) != frozen,
            15,
            "heartbeats to resume",
        )
        assert_alive(worker)
        assert heartbeat_of(db_url, worker.pid) not in (None, frozen), "no heartbeat since"

        # The job that was running through the fault was not cancelled.
        final = wait_settled(db_url, [job_id], worker, 20)
        assert_alive(worker)
        assert final[job_id] == "succeeded", (final, worker.output()[-3000:])
        assert [r["outcome"] for r in attempt_rows(db_url, job_id)] == ["succeeded"]
        assert run_labels(db_url, job_id) == ["start", "done"]

        # A clean stop still unregisters.
        assert stop_cleanly(worker) == 0, worker.output()[-3000:]
        assert worker_row(db_url, worker.pid) is None, "the worker row was not deleted"
    finally:
        worker.stop()


# -- 5: heartbeats while the database is slow (the jobs table is locked) ----------------


def test_heartbeats_go_on_while_the_jobs_table_is_locked_and_no_peer_rescues(
    db_url: str, tmp_path: Path
) -> None:
    app = "tests.apps.heartbeat_load:app"
    intervals = ("--heartbeat-interval", "1", "--stalled-timeout", "4", "--polling-interval", "1")
    long_job = defer_jobs(db_url, "long", {"seconds": 9.5})[0]
    defer_jobs(db_url, "short", *({"seconds": 0.2} for _ in range(80)))
    busy = WorkerProcess(
        db_url, app, "--queue", "default", "--concurrency", "3", *intervals,
        log_path=tmp_path / "busy.log",
    )  # fmt: skip
    peer = WorkerProcess(
        db_url, app, "--queue", "other", *intervals, log_path=tmp_path / "peer.log"
    )
    try:
        wait_until(lambda: "start" in run_labels(db_url, long_job), 30, "the long job to start")
        wait_until(lambda: worker_row(db_url, peer.pid), 30, "the peer to register")
        busy_id = worker_id_of(db_url, busy.pid)
        peer_id = worker_id_of(db_url, peer.pid)
        time.sleep(1.0)  # the periodic tick and the loops are under way

        samples: list[tuple[float, dict[int, float]]] = []
        with psycopg.connect(db_url) as locker, psycopg.connect(db_url, autocommit=True) as probe:
            locker.execute("SET lock_timeout = '10s'")
            locker.execute("LOCK TABLE tracedjobs_jobs IN ACCESS EXCLUSIVE MODE")
            locked_at = time.monotonic()
            while time.monotonic() - locked_at < 5.5:
                rows = probe.execute(
                    "SELECT pid, extract(epoch FROM clock_timestamp() - last_heartbeat_at) "
                    "FROM tracedjobs_workers"
                ).fetchall()
                samples.append((time.monotonic() - locked_at, {r[0]: float(r[1]) for r in rows}))
                time.sleep(0.2)
            heartbeats = query(db_url, "SELECT pid, last_heartbeat_at FROM tracedjobs_workers")
            locker.rollback()
        assert_alive(busy)
        assert_alive(peer)

        for worker in (busy, peer):
            ages = [s.get(worker.pid) for _, s in samples]
            assert None not in ages, f"worker {worker.pid} lost its row during the lock"
            worst = max(a for a in ages if a is not None)
            assert worst < 4.0, (
                f"worker {worker.pid}'s heartbeat went {worst:.1f} s stale while the jobs table "
                "was locked (stalled timeout 4 s): peers would declare it dead"
            )
        assert {pid for pid, _ in heartbeats} >= {busy.pid, peer.pid}

        final = wait_settled(db_url, [long_job], busy, 30)
        assert final[long_job] == "succeeded", final
        outcomes = [r["outcome"] for r in attempt_rows(db_url, long_job)]
        assert outcomes == ["succeeded"], outcomes
        assert (
            scalar(db_url, "SELECT count(*) FROM tracedjobs_attempts WHERE outcome = 'lost'") == 0
        )
        assert worker_id_of(db_url, busy.pid) == busy_id
        assert worker_id_of(db_url, peer.pid) == peer_id
        for worker in (busy, peer):
            assert "declared dead" not in worker.output()
            assert_alive(worker)
    finally:
        busy.stop()
        peer.stop()


# -- 6: sync tasks past their timeout -------------------------------------------------------


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:  # at a tie, -1 sorts first: an end frees the slot it hands on
        running += step
        peak = max(peak, running)
    return peak


def test_sync_timeouts_fail_at_the_deadline_keep_counting_and_do_not_block_exit(
    db_url: str, tmp_path: Path
) -> None:
    # Four threads stuck 3 s, then one stuck 30 s: the last one must not hold up the exit.
    jobs = defer_jobs(db_url, "stuck", *({"seconds": 3.0} for _ in range(4)), {"seconds": 30.0})
    worker = WorkerProcess(
        db_url, APP, "--concurrency", "2", "--one-shot", log_path=tmp_path / "w.log"
    )
    try:
        worker.wait(60)
        exited = time.time()
        out = worker.output()
        assert worker.proc.returncode == 0, out[-3000:]
        final = statuses(db_url, jobs)
        assert set(final.values()) == {"failed"}, (final, out[-3000:])
        last_finish = 0.0
        for job_id in jobs:
            rows = attempt_rows(db_url, job_id)
            assert [(r["outcome"], r["error_type"]) for r in rows] == [("failed", "TimeoutError")]
            assert 0.3 <= rows[0]["duration"] <= 2.5, f"failed after {rows[0]['duration']} s"
            last_finish = max(last_finish, rows[0]["finished_at"].timestamp())

        # Threads that ran on after their timeout still counted against concurrency 2.
        spans: dict[int, list[float]] = {}
        for job_id, label, started, finished in query(
            db_url,
            "SELECT job_id, label, extract(epoch FROM started_at), "
            "extract(epoch FROM finished_at) FROM test_runs ORDER BY id",
        ):
            if label == "start":
                spans[job_id] = [float(started), exited]
            else:
                spans[job_id][1] = float(finished)
        assert len(spans) == 5
        peak = _max_overlap([(s, e) for s, e in spans.values()])
        assert peak <= 2, f"{peak} task threads ran at once with concurrency 2"

        # The one-shot worker left right after its last job, not when the stuck thread ended.
        assert exited - last_finish < 5.0, f"exited {exited - last_finish:.1f} s after draining"
        assert len(run_labels(db_url, jobs[-1])) == 1, "it waited for the 30 s thread"
        assert re.search(r"abandon", out, re.IGNORECASE), (
            "the worker should report the thread it abandoned at exit:\n" + out[-3000:]
        )
    finally:
        worker.stop()


def test_should_abort_turns_true_at_a_sync_tasks_timeout(db_url: str, tmp_path: Path) -> None:
    job_id = defer_jobs(db_url, "polite", {"patience": 5.0})[0]
    worker = WorkerProcess(db_url, APP, "--one-shot", log_path=tmp_path / "w.log")
    try:
        wait_until(
            lambda: query(db_url, "SELECT value FROM test_runs WHERE job_id = %s", (job_id,)),
            20,
            "the task to record what it saw",
        )
        seen = query(db_url, "SELECT value FROM test_runs WHERE job_id = %s", (job_id,))[0][0]
        assert seen["saw_abort"], f"should_abort() never turned true (waited {seen['after']:.1f} s)"
        assert 0.3 <= seen["after"] <= 2.0, f"should_abort() turned true after {seen['after']} s"
        worker.wait(20)
        rows = attempt_rows(db_url, job_id)
        assert [(r["outcome"], r["error_type"]) for r in rows] == [("failed", "TimeoutError")]
    finally:
        worker.stop()


# -- 8: an unreachable OTLP endpoint -------------------------------------------------------


def _timed_cli(db_url: str, *args: str, python: str | None = None, **env: str) -> float:
    command = [python or sys.executable, "-m", "tracedjobs.cli", *args]
    started = time.monotonic()
    result = subprocess.run(
        command, env=cli_env(db_url, **env), capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    return elapsed


def test_defer_with_an_unreachable_otlp_endpoint_exits_at_once(db_url: str) -> None:
    args = ("defer", "--app", APP, "ok", "{}")
    baseline = _timed_cli(db_url, *args, OTEL_SDK_DISABLED="true")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    elapsed = _timed_cli(db_url, *args, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    assert elapsed - baseline < 3.0, (
        f"defer took {elapsed:.1f} s with an unreachable endpoint ({baseline:.1f} s without "
        "telemetry): a command must not wait on telemetry at exit"
    )


def test_worker_with_an_unreachable_otlp_endpoint_runs_and_stops_promptly(
    db_url: str, tmp_path: Path
) -> None:
    jobs = defer_jobs(db_url, "ok", *({"label": str(i), "sleep": 0.05} for i in range(20)))
    endpoint = f"http://127.0.0.1:{closed_port()}"
    worker = WorkerProcess(
        db_url, APP, "--polling-interval", "1", log_path=tmp_path / "w.log",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",  # export attempts while jobs run, not just at exit
        OTEL_METRIC_EXPORT_INTERVAL="500",
    )  # fmt: skip
    try:
        final = wait_settled(db_url, jobs, worker, 40)
        assert_alive(worker)
        assert set(final.values()) == {"succeeded"}, final
        times = query(
            db_url,
            "SELECT extract(epoch FROM started_at), extract(epoch FROM finished_at) "
            "FROM tracedjobs_attempts WHERE job_id = ANY(%s) ORDER BY started_at",
            (jobs,),
        )
        gaps = [float(b[0]) - float(a[1]) for a, b in itertools.pairwise(times)]
        assert max(gaps) < 2.0, f"the worker stalled {max(gaps):.1f} s between two jobs"
        worker.signal(signal.SIGTERM)
        started = time.monotonic()
        code = worker.wait(60)
        took = time.monotonic() - started
        assert took < 5.0, f"the worker took {took:.1f} s to stop: it waited on the exporter"
        assert code == 0
    finally:
        worker.stop()


def _python_313() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13.*/bin/python")))
    return found[-1] if found else shutil.which("python3.13")


@pytest.fixture(scope="session")
def py313(request: pytest.FixtureRequest) -> str:
    """The python of a venv for Python 3.13 with this checkout installed (editable).

    Built once and kept in pytest's cache directory (~13 s the first time); the test
    is skipped when no Python 3.13 interpreter is on this machine.
    """
    interpreter = _python_313()
    if interpreter is None:
        pytest.skip("no Python 3.13 interpreter (pyenv 3.13.* or python3.13 on PATH)")
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    name = f"py313-venv-{key}"
    venv = cache.mkdir(name) if cache else request.getfixturevalue("tmp_path_factory").mktemp(name)
    python = venv / "bin" / "python"
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions build it once
        if not (venv / "ready").exists():
            subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)],
                check=True,
                capture_output=True,
            )
            (venv / "ready").touch()
    return str(python)


def test_defer_on_python_313_without_telemetry_exits_at_once(db_url: str, py313: str) -> None:
    elapsed = _timed_cli(db_url, "defer", "--app", APP, "ok", "{}", python=py313)
    assert elapsed < 5.0, f"defer took {elapsed:.1f} s to exit on Python 3.13"


# -- 9: secrets in every URL form (the unit cases are in tests/unit/test_redact_url.py) --


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://u:Sekr1tPw@127.0.0.1:{port}/appdb", ["Sekr1tPw"]),
        (
            "host=127.0.0.1 port={port} user=u password='open sesame' dbname=appdb",
            ["open", "sesame"],
        ),
        ("postgresql://u:p%40ssw0rd@127.0.0.1:{port}/appdb", ["p%40ssw0rd", "ssw0rd"]),
        ("postgresql://127.0.0.1:{port}/appdb?user=u&password=Sekr1tPw", ["Sekr1tPw"]),
    ],
)
def test_worker_never_prints_the_password_of_its_database_url(url: str, secrets: list[str]) -> None:
    result = run_cli(
        url.format(port=closed_port()), "worker", "--app", APP, "--one-shot", timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for secret in secrets:
        assert secret not in output, f"{secret!r} leaked: {output!r}"
    assert "Traceback" not in output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "127.0.0.1" in result.stderr  # what it tried to reach stays readable


# -- 10: a scheduled retry starts on time ------------------------------------------------


def test_scheduled_retry_starts_on_time_not_at_the_next_poll(db_url: str, tmp_path: Path) -> None:
    # The default polling interval (5 s): a missed wake-up shows as a gap of seconds. Jobs
    # run one at a time on an idle worker, so only the wake-up for the retry can start it:
    # five with the RetryStrategy(max_attempts=1, wait=0.3) of the issue, then waits down to
    # a few milliseconds, where the retry falls due between two of the worker's queries.
    worker = WorkerProcess(db_url, APP, log_path=tmp_path / "w.log")
    runs: list[tuple[str, float, float]] = []
    try:
        wait_until(lambda: worker_row(db_url, worker.pid), 30, "the worker to register")
        cases: list[tuple[str, dict[str, float], float]] = [("fail_once", {}, 0.3)] * 5 + [
            ("fail_once_wait", {"wait": wait}, wait) for wait in (0.1, 0.03, 0.01, 0.003, 0.001)
        ]
        for task, kwargs, wait in cases:
            job_id = defer_jobs(db_url, task, kwargs)[0]
            final = wait_settled(db_url, [job_id], worker, 20)
            assert_alive(worker)
            assert final[job_id] == "succeeded", final
            first, second = attempt_rows(db_url, job_id)
            assert (first["outcome"], second["outcome"]) == ("retried", "succeeded")
            gap = (second["started_at"] - first["finished_at"]).total_seconds()
            runs.append((task, wait, round(gap, 3)))
        late = [r for r in runs if r[2] > r[1] + 1.0]
        early = [r for r in runs if r[2] < r[1] - 0.05]
        assert not late, f"retries started late (task, wait, gap): {runs}"
        assert not early, f"retries started before their wait (task, wait, gap): {runs}"
    finally:
        worker.stop()


# -- 11: the embedded default says so; the worker says which database it uses ------------


def _cli_without_database(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "TRACEDJOBS_DATABASE_URL" and not k.startswith(("OTEL_", "PG"))
    }
    env.update(TRACEDJOBS_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=180, cwd=home
    )


@pytest.fixture
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("tjf")  # short: the server's socket lives under it
    try:
        yield home.resolve()
    finally:
        _cli_without_database(home, "-m", "tracedjobs.cli", "db", "stop")


def test_bare_app_warns_once_that_it_uses_the_embedded_server(embedded_home: Path) -> None:
    code = (
        "import logging, tracedjobs\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')\n"
        "logging.captureWarnings(True)\n"
        "app = tracedjobs.App()\n"
        "@app.task(name='t')\n"
        "def t(): pass\n"
        "t.defer()\n"
        "t.defer()\n"
        "print(len(app.job_manager.list_jobs()))\n"
        "app.close()\n"
    )
    result = _cli_without_database(embedded_home, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "2"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr
    assert str(embedded_home) in warnings[0], "the warning should name the data directory"
    assert "database_url" in warnings[0].lower(), "the warning should say how to use a server"


def test_worker_logs_the_database_it_uses_without_the_password(db_url: str, tmp_path: Path) -> None:
    dbname = str(conninfo_to_dict(db_url)["dbname"])
    url = with_conninfo(db_url, password="Sekr1tPw")  # trust auth ignores it
    worker = WorkerProcess(url, APP, log_path=tmp_path / "w.log")
    try:
        wait_until(lambda: worker_row(db_url, worker.pid), 30, "the worker to register")
        with contextlib.suppress(AssertionError):
            worker.wait_for_output(dbname, 5)
        out = worker.output()
        assert dbname in out, f"the worker did not log which database it uses:\n{out}"
        assert "Sekr1tPw" not in out
    finally:
        worker.stop()
