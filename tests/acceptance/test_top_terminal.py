"""`tracedjobs top` as a user runs it: in a real terminal (tmux), against a real worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import TmuxTop, embedded_dir
from tests.helpers import ROOT, WorkerProcess, cli_env, run_cli, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_top_follows_a_live_worker_and_shows_it_stale_after_sigkill(
    db_url: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(db_url, "tests.apps.basic:app", "--name", "w-tmux",
                           "--heartbeat-interval", "0.5", "--stalled-timeout", "30",
                           log_path=tmp_path / "w.log")
    top = TmuxTop(cli_env(db_url, TERM="xterm-256color"), "--interval", "0.5", "--seconds", "3")
    try:
        top.wait_for(lambda s: "w-tmux" in s and "alive" in s and "1 alive" in s,
                     "the worker alive in top")
        for _ in range(5):
            assert run_cli(db_url, "defer", "--app", "tests.apps.basic:app", "noop").returncode == 0
        # The jobs run: the tail shows them finishing and the done/1m count moves.
        screen = top.wait_for(lambda s: "doing→succeeded" in s, "succeeded jobs in the tail")
        assert "noop" in screen
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
        # --seconds 3: stale within the cutoff plus a refresh or two.
        screen = top.wait_for(lambda s: "STALE" in s and "1 stale" in s, "the worker stale",
                              timeout=15)
        assert "0 alive" in screen
        top.press("q")
        wait_until(top.dead, 15, "top to exit on q")
        assert "Traceback" not in top.screen()
    finally:
        top.close()
        worker.stop()


def test_top_keeps_following_jobs_arriving_every_100ms_until_the_user_moves(
    db_url: str, tmp_path: Path
) -> None:
    import re
    import time

    import tracedjobs

    feeder = tracedjobs.App(database_url=db_url)

    @feeder.task(name="noop")
    async def noop() -> None: ...

    worker = WorkerProcess(db_url, "tests.apps.basic:app", "--concurrency", "4",
                           log_path=tmp_path / "w.log")
    # 80x24 and the default interval: what the user had.
    top = TmuxTop(cli_env(db_url, TERM="xterm-256color"), width=80, height=24)
    try:
        top.wait_for(lambda s: "1 alive" in s, "the worker in top")
        newest = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            newest = noop.defer()
            time.sleep(0.1)  # the arrival rate under test
        # The newest job reaches the top of the list (its id whole, its time current).
        screen = top.wait_for(lambda s: re.search(rf"#{newest}\b", s), "the newest job on screen",
                              timeout=15)
        assert "PAUSED" not in screen and "NOT LIVE" not in screen
        # Moving the cursor pauses the list, visibly, with how to resume.
        top.press("Up")
        top.wait_for(lambda s: "PAUSED" in s and "g/Home/Esc: follow newest" in s,
                     "the pause marker")
        later = [noop.defer() for _ in range(5)]
        screen = top.wait_for(lambda s: re.search(r"PAUSED · (\d+) newer above", s)
                              and int(re.search(r"(\d+) newer above", s)[1]) >= 5,  # type: ignore[index]
                              "the count of rows that arrived above")
        top.press("g")
        screen = top.wait_for(lambda s: re.search(rf"#{later[-1]}\b", s) and "PAUSED" not in s,
                              "following again")
        assert "Traceback" not in screen
    finally:
        top.close()
        worker.stop()


def test_once_and_json_print_the_same_snapshot(db_url: str) -> None:
    for _ in range(2):
        run_cli(db_url, "defer", "--app", "tests.apps.basic:app", "record", '{"label": "x"}')
    once = run_cli(db_url, "top", "--once")
    assert once.returncode == 0, once.stderr
    assert "tracedjobs top" in once.stdout and "QUEUE" in once.stdout and "WORKER" in once.stdout
    assert "ready 2" in once.stdout and "new→todo" in once.stdout
    data = json.loads(run_cli(db_url, "top", "--json").stdout)
    assert data["summary"]["ready"] == 2
    assert [q["name"] for q in data["queues"]] == ["default"]
    assert "password" not in json.dumps(data) and "Traceback" not in once.stderr
    bad = run_cli(db_url, "top", "--once", "--interval", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_top_survives_the_database_stopping_and_starting() -> None:
    # A throwaway embedded server of our own: the shared servers are never touched.
    with embedded_dir() as home:
        _survives_the_database_stopping_and_starting(home)


def _survives_the_database_stopping_and_starting(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRACEDJOBS_DATABASE_URL"}
    env.update(TRACEDJOBS_HOME=str(home), PYTHONPATH=str(ROOT), TERM="xterm-256color")

    def db(action: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tracedjobs.cli", "db", action], env=env,
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    db("start")
    top = TmuxTop(env, "--interval", "0.5")
    try:
        top.wait_for(lambda s: "jobs/s" in s, "top connected")
        db("stop")
        top.wait_for(lambda s: "database unreachable, retrying" in s, "the unreachable banner")
        # The clock no longer moves and the screen says how old its data is.
        top.wait_for(lambda s: "NOT LIVE: last data" in s, "the not-live marker")
        db("start")
        top.wait_for(lambda s: "unreachable" not in s and "NOT LIVE" not in s and "jobs/s" in s,
                     "top recovered", timeout=40)
        assert not top.dead() and "Traceback" not in top.screen()
        top.press("q")
        wait_until(top.dead, 15, "top to exit on q")
    finally:
        top.close()
        subprocess.run([sys.executable, "-m", "tracedjobs.cli", "db", "stop"], env=env,
                       capture_output=True, timeout=120, cwd=ROOT)
