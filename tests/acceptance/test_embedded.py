"""The zero-setup default: an embedded PostgreSQL in $TRACEDJOBS_HOME, shared by processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import embedded_dir
from tests.helpers import ROOT


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TRACEDJOBS_DATABASE_URL",) and not k.startswith("OTEL_")
    }
    env["TRACEDJOBS_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tracedjobs.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture
def home() -> Iterator[Path]:
    with embedded_dir() as path:
        try:
            yield path
        finally:
            cli(path, "db", "stop")


def test_two_processes_starting_it_at_once_share_one_server(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRACEDJOBS_DATABASE_URL"}
    env.update(TRACEDJOBS_HOME=str(home), PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tracedjobs.cli", "db", "start"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    urls = {out.strip().rsplit(" ", 1)[-1] for out, _ in outputs}
    assert len(urls) == 1  # the same server
    status = cli(home, "db", "status")
    assert status.returncode == 0 and "running" in status.stdout
    # Data lives where documented and survives the processes that started it.
    assert (home / "pgdata" / "PG_VERSION").read_text().strip() == "18"


def test_db_commands_and_reuse_by_a_later_process(home: Path) -> None:
    assert cli(home, "db", "status").returncode == 3  # not running yet
    started = cli(home, "db", "start")
    assert started.returncode == 0, started.stderr
    url = cli(home, "db", "url").stdout.strip()
    assert url.startswith("postgresql://postgres:@/postgres?host=")
    # A later process (defer, list) reuses the running server and its data.
    cli(home, "migrate")
    listed = cli(home, "jobs", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]"
    stopped = cli(home, "db", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli(home, "db", "status").returncode == 3
    # Started again on demand by any command, with the data kept.
    assert cli(home, "jobs", "list").returncode == 0


def test_quick_start_demo_runs_on_the_embedded_database(home: Path) -> None:
    result = cli(home, "demo", "--jobs", "12", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "deferred 12 jobs" in result.stdout
    assert "succeeded" in result.stdout and "failed" in result.stdout
    summary = [line for line in result.stdout.splitlines() if line.startswith("12 jobs in")]
    assert summary, result.stdout
    # The demo's data is in the embedded database for the next commands.
    failed = cli(home, "jobs", "list", "--status", "failed", "--json")
    assert failed.returncode == 0 and '"charge_card"' not in failed.stdout
    assert "tracedjobs.demo.charge_card" in failed.stdout


def test_library_use_of_the_embedded_default_needs_no_migrate(home: Path) -> None:
    code = (
        "import tracedjobs\n"
        "app = tracedjobs.App()\n"
        "@app.task(name='t')\n"
        "def t(x): print('ran', x)\n"
        "job = t.defer(x=1)\n"
        "app.run_worker(wait=False, install_signal_handlers=False)\n"
        "print(app.job_manager.get_job_status(job))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRACEDJOBS_DATABASE_URL"}
    env.update(TRACEDJOBS_HOME=str(home), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120, cwd=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran", "1", "succeeded"]


def test_every_directory_of_a_project_finds_the_same_database() -> None:
    with embedded_dir("tjp") as project:
        _every_directory_finds_the_same_database(project)


def _every_directory_finds_the_same_database(project: Path) -> None:
    # No TRACEDJOBS_HOME: the data goes with the project, whichever directory a command runs in.
    (project / "pyproject.toml").write_text("[project]\nname = 'shop'\n")
    deep = project / "src" / "shop" / "jobs"
    deep.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRACEDJOBS_DATABASE_URL", "TRACEDJOBS_HOME") and not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tracedjobs", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=180)

    try:
        started = run(project, "db", "start")
        assert started.returncode == 0, started.stderr
        pgdata = project.resolve() / ".tracedjobs" / "pgdata"
        assert f"data directory {pgdata} (project {project.resolve()} (has pyproject.toml))" in (
            started.stderr)
        from_root, from_deep = run(project, "db", "url"), run(deep, "db", "url")
        assert from_root.stdout == from_deep.stdout and from_deep.stdout.startswith("postgresql://")
        assert str(pgdata) in from_deep.stderr  # `db url` says where the data is
        status = run(deep, "db", "status")
        assert status.returncode == 0 and f"data={pgdata}" in status.stdout
        assert "chosen by: project" in status.stdout
        deferred = run(project, "defer", "--unknown", "shop.tasks.ship", "order=7")
        assert deferred.returncode == 0, deferred.stderr
        listed = run(deep, "jobs", "list", "--json")
        assert [j["task_name"] for j in json.loads(listed.stdout)] == ["shop.tasks.ship"]
    finally:
        run(project, "db", "stop")
