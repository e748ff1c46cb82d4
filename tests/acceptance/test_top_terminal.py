"""`tracedjobs top` as a user runs it: in a real terminal (tmux), against a real worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT, WorkerProcess, cli_env, run_cli, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class TmuxTop:
    """`tracedjobs top` running in a detached tmux session of a given size."""

    def __init__(self, env: dict[str, str], *args: str, width: int = 120, height: int = 40) -> None:
        self.session = f"tjtop-{uuid.uuid4().hex[:8]}"
        # A tmux server of our own (-L): it takes its environment from ``env``.
        self.tmux = ["tmux", "-L", self.session]
        command = " ".join([sys.executable, "-m", "tracedjobs.cli", "top", *args])
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
             "-c", str(ROOT), command],
            env=env, check=True,
        )
        subprocess.run([*self.tmux, "set-option", "-t", self.session, "remain-on-exit", "on"],
                       check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True).stdout

    def wait_for(self, predicate, what: str, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
        try:
            return wait_until(lambda: (s := self.screen()) and predicate(s) and s, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def press(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *keys], check=True)

    def dead(self) -> bool:
        out = subprocess.run([*self.tmux, "display-message", "-p", "-t", self.session, "#{pane_dead}"],
                             capture_output=True, text=True).stdout.strip()
        return out == "1"

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


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


def test_top_survives_the_database_stopping_and_starting(tmp_path: Path) -> None:
    # A throwaway embedded server of our own: the shared servers are never touched.
    home = tmp_path / "home"
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
        db("start")
        top.wait_for(lambda s: "unreachable" not in s and "jobs/s" in s, "top recovered",
                     timeout=40)
        assert not top.dead() and "Traceback" not in top.screen()
        top.press("q")
        wait_until(top.dead, 15, "top to exit on q")
    finally:
        top.close()
        subprocess.run([sys.executable, "-m", "tracedjobs.cli", "db", "stop"], env=env,
                       capture_output=True, timeout=120, cwd=ROOT)
