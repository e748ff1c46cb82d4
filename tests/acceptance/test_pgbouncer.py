"""tracedjobs behind a real PgBouncer in transaction pooling mode.

Each test starts a private ``pgbouncer`` (Debian's package; .ci/run installs it) in front
of its own test database: ``pool_mode = transaction``, trust auth, a free port. Workers and
``top`` get the pooled URL as ``TRACEDJOBS_DATABASE_URL`` and a direct URL as
``TRACEDJOBS_SESSION_DATABASE_URL`` (what needs a session: LISTEN, the gauge exporter's
advisory lock). The last tests show what breaks without the session URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import tracedjobs
from tests.cli_helpers import TmuxTop
from tests.helpers import WorkerProcess, cli_env, query, run_cli, scalar, wait_until

pytestmark = pytest.mark.slow

SESSION_ENV = "TRACEDJOBS_SESSION_DATABASE_URL"
# Direct connections carry this name, so the server shows which backends are session ones.
SESSION_APP_NAME = "tj-session"
FAST = ("--heartbeat-interval", "0.5", "--stalled-timeout", "2")


@dataclasses.dataclass
class Bouncer:
    url: str  # the test database through pgbouncer (transaction pooling)
    direct: str  # the same database, straight to PostgreSQL: the session URL
    dbname: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def session_env(self) -> dict[str, str]:
        return {SESSION_ENV: self.direct}

    def app(self) -> tracedjobs.App:
        """An App that defers through pgbouncer (with the session URL, as documented)."""
        connector = tracedjobs.PsycopgConnector(conninfo=self.url, session_conninfo=self.direct)
        return tracedjobs.App(connector=connector)


def _pgbouncer() -> str:
    exe = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")
    if exe is None:
        pytest.fail(
            "pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run installs it); "
            "these tests prove tracedjobs works behind it and must not be skipped"
        )
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@pytest.fixture
def bouncer(db_url: str, tmp_path: Path) -> Iterator[Bouncer]:
    exe = _pgbouncer()
    # Where the test database really is (host or socket directory, port, user), as libpq
    # resolved it.
    with psycopg.connect(db_url) as conn:
        info = conn.info
        host, port, user, dbname = info.host, info.port, info.user, info.dbname
        password = info.password
    listen_port = _free_port()
    conf = tmp_path / "pgbouncer"
    conf.mkdir()
    # With trust between client and pgbouncer, pgbouncer logs in to the server with the
    # password written here (none for the trust-auth test server).
    (conf / "userlist.txt").write_text(f"{_quote(user)} {_quote(password or '')}\n")
    (conf / "pgbouncer.ini").write_text(
        f"""[databases]
{dbname} = host={host} port={port} dbname={dbname}

[pgbouncer]
pool_mode = transaction
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {conf / "userlist.txt"}
admin_users = {user}
max_client_conn = 200
default_pool_size = 20
"""
    )
    command = [exe]
    if os.geteuid() == 0:
        # pgbouncer refuses to run as root; it reads its files before switching user.
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            command += ["-u", name]
            break
    command.append(str(conf / "pgbouncer.ini"))
    log_path = tmp_path / "pgbouncer.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = make_conninfo(host="127.0.0.1", port=listen_port, dbname=dbname, user=user)
    params = conninfo_to_dict(db_url)
    params["application_name"] = SESSION_APP_NAME
    direct = make_conninfo(**params)
    bouncer = Bouncer(url, direct, dbname, proc, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited ({proc.returncode}):\n{bouncer.log()}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    try:
        wait_until(up, 20, "pgbouncer to accept connections")
        yield bouncer
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _defer(app: tracedjobs.App, task: str, **kwargs: Any) -> int:
    return app.configure_task(task).defer(**kwargs)


def _status(db_url: str, job_id: int) -> str:
    return scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,))


def _defer_to_start(db_url: str, job_id: int) -> float:
    """Seconds from the defer's transaction to the first attempt's claim (server clock)."""
    return float(
        scalar(
            db_url,
            "SELECT extract(epoch FROM min(a.started_at) - j.created_at) FROM tracedjobs_jobs j "
            "JOIN tracedjobs_attempts a ON a.job_id = j.id WHERE j.id = %s GROUP BY j.id",
            (job_id,),
        )
    )


def _listeners(db_url: str, dbname: str, channel: str) -> list[str]:
    """application_name of each backend whose last statement was LISTEN ``channel``."""
    return [
        r[0]
        for r in query(
            db_url,
            "SELECT application_name FROM pg_stat_activity WHERE datname = %s AND query = %s",
            (dbname, f"LISTEN {channel}"),
        )
    ]


# -- the parts: prepared statements and LISTEN behind a transaction pooler --------------------


def test_prepared_statements_are_turned_off_behind_pgbouncer(
    bouncer: Bouncer, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg prepares a statement run 5 times on a connection; PgBouncer 1.18 in
    transaction mode runs the next transaction on whichever server connection is free."""
    statement = "SELECT count(*) FROM tracedjobs_jobs WHERE id > %(n)s"

    def run_on_two_connectors(**options: Any) -> None:
        connectors = [
            tracedjobs.PsycopgConnector(conninfo=bouncer.url, min_size=1, max_size=1, **options)
            for _ in range(2)
        ]
        try:
            for connector in connectors:
                for n in range(8):
                    connector.execute(statement, {"n": n})
        finally:
            for connector in connectors:
                connector.close()

    # What psycopg does by default (kept when asked for, e.g. for PgBouncer >= 1.21 with
    # max_prepared_statements): both clients prepare "_pg3_0" on the same server connection.
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        run_on_two_connectors(kwargs={"prepare_threshold": 5})
    # The connector saw a pooler answer and prepares nothing: with or without a session URL.
    run_on_two_connectors()
    run_on_two_connectors(session_conninfo=bouncer.direct)
    # Statements like these (defer, the job commands) need no session: no warning either.
    assert "connection pooler" not in caplog.text


def test_listen_needs_the_session_url_behind_pgbouncer(
    bouncer: Bouncer, caplog: pytest.LogCaptureFixture
) -> None:
    async def notified(connector: tracedjobs.PsycopgConnector) -> list[str]:
        conn = await connector.connect_session_async()
        try:
            await conn.execute("LISTEN tj_probe")
            with psycopg.connect(bouncer.direct, autocommit=True) as other:
                other.execute("NOTIFY tj_probe, 'hello'")
            return [n.payload async for n in conn.notifies(timeout=1.0)]
        finally:
            await conn.close()

    with_session = tracedjobs.PsycopgConnector(conninfo=bouncer.url, session_conninfo=bouncer.direct)
    assert asyncio.run(notified(with_session)) == ["hello"]
    assert "connection pooler" not in caplog.text

    # Without it the LISTEN ran on a pooled server connection that went back to the pool:
    # the notification reaches pgbouncer, which drops it, and nobody hears a thing.
    without = tracedjobs.PsycopgConnector(conninfo=bouncer.url)
    assert asyncio.run(notified(without)) == []
    assert "got packet 'A' from server when not linked" in bouncer.log()
    (warning,) = [r for r in caplog.records if "connection pooler" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert SESSION_ENV in warning.getMessage()


# -- real workers through pgbouncer, session connections direct --------------------------------


def test_worker_behind_pgbouncer_starts_jobs_at_once_retries_and_honours_locks(
    bouncer: Bouncer, tmp_path: Path
) -> None:
    # -p 5: the polling fallback; only LISTEN can start a job well within it.
    worker = WorkerProcess(
        bouncer.url, "tests.apps.otel:app", *FAST, "-p", "5", "--concurrency", "2",
        log_path=tmp_path / "worker.log", **bouncer.session_env(),
    )  # fmt: skip
    app = bouncer.app()
    try:
        # LISTEN runs on a direct session; nothing LISTENs through pgbouncer.
        wait_until(
            lambda: _listeners(bouncer.direct, bouncer.dbname, "tracedjobs_abort"),
            30, "the worker's LISTEN",
        )  # fmt: skip
        assert _listeners(bouncer.direct, bouncer.dbname, "tracedjobs_abort") == [SESSION_APP_NAME]

        latencies = []
        for i in range(4):
            job_id = _defer(app, "traced", label=f"job {i}")
            wait_until(lambda j=job_id: _status(bouncer.direct, j) == "succeeded", 30, "the job")
            latencies.append(_defer_to_start(bouncer.direct, job_id))
        assert max(latencies) < 1.0, latencies

        # Retries: `broken` has retry=1: a retried attempt, then a failed one.
        broken = _defer(app, "broken")
        wait_until(lambda: _status(bouncer.direct, broken) == "failed", 30, "the retried job")
        assert query(
            bouncer.direct,
            "SELECT attempt, outcome, error_type FROM tracedjobs_attempts WHERE job_id = %s "
            "ORDER BY attempt",
            (broken,),
        ) == [(1, "retried", "ValueError"), (2, "failed", "ValueError")]

        # Locks: two slots, but jobs sharing a lock never overlap and run in defer order.
        locked = [
            app.configure_task("slow", lock="report").defer(seconds=0.3) for _ in range(2)
        ]
        wait_until(
            lambda: all(_status(bouncer.direct, j) == "succeeded" for j in locked), 30,
            "the locked jobs",
        )  # fmt: skip
        (first_end,), (second_start,) = (
            query(bouncer.direct, "SELECT finished_at FROM tracedjobs_attempts WHERE job_id = %s",
                  (locked[0],))[0],
            query(bouncer.direct, "SELECT started_at FROM tracedjobs_attempts WHERE job_id = %s",
                  (locked[1],))[0],
        )  # fmt: skip
        assert second_start >= first_end
        output = worker.output()
        assert "connection pooler" not in output and "Traceback" not in output
    finally:
        app.close()
        worker.stop()


def test_a_killed_workers_job_is_rescued_behind_pgbouncer(
    bouncer: Bouncer, tmp_path: Path
) -> None:
    app = bouncer.app()
    env = bouncer.session_env()
    job_id = _defer(app, "slow_first_attempt", seconds=120)
    victim = WorkerProcess(bouncer.url, "tests.apps.liveness:app", *FAST, "-p", "1",
                           log_path=tmp_path / "victim.log", **env)
    rescuer = None
    try:
        wait_until(lambda: _status(bouncer.direct, job_id) == "doing", 30, "the first attempt")
        rescuer = WorkerProcess(bouncer.url, "tests.apps.liveness:app", *FAST, "-p", "1",
                                log_path=tmp_path / "rescuer.log", **env)
        victim.signal(signal.SIGKILL)
        victim.wait()
        wait_until(lambda: _status(bouncer.direct, job_id) == "succeeded", 30, "the rescue")
        assert [
            (attempt, outcome, pid)
            for attempt, outcome, pid in query(
                bouncer.direct,
                "SELECT a.attempt, a.outcome, w.pid FROM tracedjobs_attempts a "
                "LEFT JOIN tracedjobs_workers w ON w.id = a.worker_id "
                "WHERE a.job_id = %s ORDER BY a.id",
                (job_id,),
            )
        ] == [(1, "lost", None), (2, "succeeded", rescuer.pid)]
        # Logged once the rescue pass returns, which may be after the job ran again.
        rescuer.wait_for_output(f"job {job_id} (slow_first_attempt) was lost by its worker", 15)
    finally:
        app.close()
        victim.stop()
        if rescuer is not None:
            rescuer.stop()


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _queue_jobs(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("tracedjobs_queue_jobs{")]


def test_the_gauge_election_behind_pgbouncer_elects_one_exporter_and_hands_over(
    bouncer: Bouncer, tmp_path: Path
) -> None:
    app = bouncer.app()
    app.configure_task("traced", schedule_in={"hours": 1}).defer()  # a queue to report on
    ports = [_free_port(), _free_port()]
    workers = [
        WorkerProcess(bouncer.url, "tests.apps.otel:app", *FAST, "--metrics-port", str(port),
                      log_path=tmp_path / f"w{i}.log", **bouncer.session_env())
        for i, port in enumerate(ports)
    ]  # fmt: skip
    try:
        def exporters() -> list[int]:
            return [i for i, port in enumerate(ports) if _queue_jobs(_scrape(port))]

        (leader,) = wait_until(lambda: (e := exporters()) and e, 30, "an elected exporter")
        for _ in range(4):  # stays one over several refreshes (0.5 s each here)
            time.sleep(0.5)
            assert exporters() == [leader]
        (todo,) = [s for s in _queue_jobs(_scrape(ports[leader])) if '"todo"' in s]
        assert todo.endswith(" 1.0")
        # The lock lives in the leader's direct session: it goes when the process dies.
        workers[leader].signal(signal.SIGKILL)
        workers[leader].wait(10)
        wait_until(lambda: exporters() == [1 - leader], 30, "the other worker to take over")
    finally:
        app.close()
        for w in workers:
            w.stop()


def test_cli_behind_pgbouncer_migrates_and_top_tails_live_through_the_session_url(
    bouncer: Bouncer,
) -> None:
    env = bouncer.session_env()
    # The migration lock is transaction-level: fine through the pooler.
    result = run_cli(bouncer.url, "migrate", **env)
    assert result.returncode == 0 and "schema is up to date" in result.stdout, result.stderr
    app = bouncer.app()
    first = _defer(app, "traced")
    result = run_cli(bouncer.url, "top", "--json", **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["ready"] == 1

    # --interval 60: a job that shows up within seconds was brought by LISTEN.
    top = TmuxTop(cli_env(bouncer.url, TERM="xterm-256color", **env), "--interval", "60")
    try:
        top.wait_for(lambda s: f"#{first}" in s, "the first snapshot")
        wait_until(
            # LISTEN tracedjobs_events, then tracedjobs_jobs (new ready jobs): the last one.
            lambda: _listeners(bouncer.direct, bouncer.dbname, "tracedjobs_jobs")
            == [SESSION_APP_NAME],
            30, "top's LISTEN on the session URL",
        )  # fmt: skip
        second = _defer(app, "traced")
        screen = top.wait_for(lambda s: f"#{second}" in s, "the new job, woken by LISTEN",
                              timeout=15)
        assert "Traceback" not in screen and "NOT LIVE" not in screen
    finally:
        top.close()
        app.close()


# -- without the session URL -------------------------------------------------------------------


def test_without_the_session_url_a_worker_warns_and_new_jobs_wait_for_polling(
    bouncer: Bouncer, tmp_path: Path
) -> None:
    # Deferring needs no session.
    app = tracedjobs.App(connector=tracedjobs.PsycopgConnector(conninfo=bouncer.url))
    worker = WorkerProcess(bouncer.url, "tests.apps.otel:app", *FAST, "-p", "4",
                           log_path=tmp_path / "worker.log")
    try:
        worker.wait_for_output("goes through a connection pooler")
        assert SESSION_ENV in worker.output()
        canary = _defer(app, "traced")
        wait_until(lambda: _status(bouncer.direct, canary) == "succeeded", 30, "the canary")
        # The worker just recorded the canary and found nothing else: it now sleeps until
        # its next poll, 4 s away. LISTEN would wake it at once; through pgbouncer it does not.
        # (The short sleep lets its last claim, a round trip after the canary's, go first.)
        time.sleep(0.2)
        job_id = _defer(app, "traced")
        wait_until(lambda: _status(bouncer.direct, job_id) == "succeeded", 30, "the job")
        assert _defer_to_start(bouncer.direct, job_id) > 1.0
        # Slower, but sound: nothing failed (prepared statements are off).
        output = worker.output()
        assert " ERROR " not in output and "Traceback" not in output
    finally:
        app.close()
        worker.stop()
