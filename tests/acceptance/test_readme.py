"""The README as a new user reads it: its quick start in a fresh venv, its example as written,
its command lines run literally from the directory that holds `myapp/`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import (
    SCRIPT,
    TmuxTop,
    embedded_dir,
    free_port,
    readme_blocks,
    user_env,
)
from tests.helpers import ROOT, query, scalar, wait_until

pytestmark = pytest.mark.slow

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def command_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def files_of_the_example() -> dict[str, str]:
    """The README's Python blocks that start with ``# path``: the files of its example."""
    files = {}
    for block in readme_blocks("python"):
        first = block.splitlines()[0]
        match = re.match(r"# ([\w/]+\.py)\b", first)
        if match:
            files[match[1]] = block
    return files


def test_the_example_runs_as_written_and_its_command_lines_literally(
    db_url: str, tmp_path: Path
) -> None:
    files = files_of_the_example()
    assert set(files) == {"myapp/tasks.py", "enqueue.py", "myapp/signup.py"}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(text)
    # A user's shell: the installed script on PATH, the database in the environment.
    env = user_env(db_url, PATH=f"{SCRIPT.parent}{os.pathsep}{os.environ['PATH']}",
                   TERM="xterm-256color")

    def python(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    ran = subprocess.run([sys.executable, "enqueue.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 6

    query(db_url, "CREATE TABLE users (email text UNIQUE)")
    signed = python("import os, psycopg\nfrom myapp.signup import sign_up\n"
                    "with psycopg.connect(os.environ['TRACEDJOBS_DATABASE_URL']) as conn:\n"
                    "    sign_up(conn, 'new@user.io')\n")
    assert signed.returncode == 0, signed.stderr
    again = python("import os, psycopg\nfrom myapp.signup import sign_up\n"
                   "with psycopg.connect(os.environ['TRACEDJOBS_DATABASE_URL']) as conn:\n"
                   "    sign_up(conn, 'new@user.io')\n")
    assert "UniqueViolation" in again.stderr  # the second sign-up rolls back, job and all
    assert query(db_url, "SELECT args FROM tracedjobs_jobs WHERE args->>'to' = 'new@user.io'") == [
        ({"to": "new@user.io"},)]

    [block] = [b for b in readme_blocks("sh") if "tracedjobs migrate" in b]
    lines = command_lines(block)
    assert [line.split()[1] for line in lines] == ["migrate", "defer", "defer", "worker", "top"]
    for line in lines[:3]:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (line, done.stderr)
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 9

    # The worker line, with its metrics port moved to a free one (9464 may be taken here).
    port = free_port()
    worker_line = lines[3].replace("--metrics-port 9464", f"--metrics-port {port}")
    assert worker_line != lines[3]
    worker = subprocess.Popen(["bash", "-c", f"exec {worker_line}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    top = None
    try:
        # Every email job that is due runs (two are scheduled later; the report's queue is not
        # this worker's).
        due = ("SELECT count(*) FROM tracedjobs_jobs WHERE queue_name = 'emails' "
               "AND (scheduled_at IS NULL OR scheduled_at <= now())")
        wait_until(lambda: scalar(db_url, due) >= 6 and scalar(
            db_url, due + " AND status <> 'succeeded'") == 0, 60, "the due email jobs to run")
        # A job's attempt is counted once its result is committed, a moment after the row
        # says so: the scrape is retried until it counts every email job that succeeded.
        # Counted anew each time: the jobs scheduled 10 s and 30 s after their defer may come
        # due and run meanwhile (a count read once could then be overtaken and never equalled).
        succeeded = ("SELECT count(*) FROM tracedjobs_jobs WHERE queue_name = 'emails' "
                     "AND status = 'succeeded'")

        def counted() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("messaging_client_consumed_messages_total{")
                       and 'tracedjobs_task_name="myapp.tasks.send_email"' in line
                       and 'tracedjobs_job_outcome="succeeded"' in line)

        wait_until(lambda: counted() == scalar(db_url, succeeded), 15,
                   "the successes in the worker's metrics")
        if shutil.which("tmux"):
            top = TmuxTop(env, line=lines[4], cwd=tmp_path, width=100, height=30)
            screen = top.wait_for(lambda s: "LIVE" in s and "send_email" in s, "top live")
            assert "1 alive" in screen and "Traceback" not in screen
            top.press("q")
            wait_until(top.dead, 15, "top to exit on q")
    finally:
        if top is not None:
            top.close()
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    assert worker.returncode == 0, output


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # The embedded server's data goes under the checkout copy (see embedded_dir).
    with embedded_dir("tjqs") as path:
        yield path


def _copy_checkout(target: Path) -> None:
    ignored = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", ".tracedjobs",
                                     "__pycache__", ".*_cache", ".hypothesis", "bench")
    shutil.copytree(ROOT, target, ignore=ignored)


@needs_tmux
def test_quick_start_in_a_fresh_venv_gives_the_demo_and_a_live_top(short_tmp: Path) -> None:
    checkout = short_tmp / "tj"
    _copy_checkout(checkout)
    [quick_start] = [b for b in readme_blocks("sh") if "tracedjobs demo" in b]
    [line] = command_lines(quick_start)
    env = user_env()  # no database configured: the embedded one, found via pyproject.toml
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    try:
        done = subprocess.run(["bash", "-c", line], cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert re.search(r"^\d+ jobs in [\d.]+ s: .*failed.*succeeded", done.stdout, re.MULTILINE)
        assert (checkout / ".tracedjobs" / "pgdata" / "PG_VERSION").is_file()
        # The same install gives the live screen (Textual comes with it).
        top = TmuxTop(dict(env, TERM="xterm-256color"), width=100, height=30, cwd=checkout,
                      command=[str(checkout / ".venv" / "bin" / "tracedjobs")])
        try:
            screen = top.wait_for(lambda s: "LIVE" in s and "charge_card" in s, "the live top")
            assert "Textual" not in screen and "Traceback" not in screen
            top.press("q")
            wait_until(top.dead, 15, "top to exit on q")
        finally:
            top.close()
        as_module = subprocess.run(
            [str(checkout / ".venv" / "bin" / "python"), "-m", "tracedjobs", "db", "status"],
            cwd=checkout / "docs", env=env, capture_output=True, text=True, timeout=60)
        assert as_module.returncode == 0, as_module.stderr
        assert f"data={checkout.resolve() / '.tracedjobs' / 'pgdata'}" in as_module.stdout
    finally:
        subprocess.run([str(checkout / ".venv" / "bin" / "tracedjobs"), "db", "stop"],
                       cwd=checkout, env=env, capture_output=True, timeout=120)
