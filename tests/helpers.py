"""Helpers for tests that start real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def cli_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TRACEDJOBS_DATABASE_URL"] = db_url
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(
    db_url: str, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `tracedjobs ARGS` to completion; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "tracedjobs.cli", *args],
        env=cli_env(db_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class WorkerProcess:
    """A `tracedjobs worker` subprocess with its output collected in a file."""

    def __init__(self, db_url: str, app: str, *args: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracedjobs.cli", "worker", "--app", app, *args],
            env=cli_env(db_url, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.output(), timeout, f"{text!r} in worker output")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill the worker (SIGKILL, which ends a SIGSTOPped one too) and close its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def query(db_url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(db_url: str, sql: str, params: Any = None) -> Any:
    rows = query(db_url, sql, params)
    return rows[0][0] if rows else None
