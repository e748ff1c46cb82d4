"""Procrastinate's "Test your code that uses Procrastinate" how-to, against tracedjobs.testing.

``InMemoryConnector`` is backed by a real (throwaway) PostgreSQL database here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import tracedjobs as procrastinate
from tests.compat.apps import shop
from tests.compat.apps.shop import send_digest, send_receipt
from tracedjobs import testing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app() -> Iterator[procrastinate.App]:
    in_memory = testing.InMemoryConnector()
    shop.sent.clear()
    with shop.app.replace_connector(in_memory) as app:
        yield app


def test_defer_inspect_run_reset(app: procrastinate.App) -> None:
    send_receipt.defer(order_id=7)

    jobs = app.connector.jobs
    assert len(jobs) == 1
    (job,) = jobs.values()
    assert job["task_name"] == send_receipt.name and job["args"] == {"order_id": 7}
    assert job["status"] == "todo" and job["queue_name"] == "emails"
    assert job["attempts"] == 0 and job["abort_requested"] is False
    assert jobs[job["id"]] == job and list(jobs) == [job["id"]]

    app.run_worker(wait=False)
    assert shop.sent == ["receipt 7"]
    assert app.connector.jobs[job["id"]]["status"] == "succeeded"
    assert [e["type"] for e in app.connector.events] == ["deferred", "started", "succeeded"]

    app.connector.reset()
    assert len(app.connector.jobs) == 0
    assert send_receipt.defer(order_id=8) == 1  # ids restart at 1, as in Procrastinate


def test_each_connector_starts_empty(app: procrastinate.App) -> None:
    assert len(app.connector.jobs) == 0
    with pytest.raises(KeyError):
        app.connector.jobs[1]


def test_failures_retries_and_queueing_locks_behave_as_in_production(
    app: procrastinate.App,
) -> None:
    failing = shop.flaky.defer()
    send_digest.defer()
    with pytest.raises(procrastinate.exceptions.AlreadyEnqueued):
        send_digest.defer()
    app.run_worker(wait=False, queues=["default"])
    assert app.connector.jobs[failing]["status"] == "failed"
    assert shop.sent == []  # the emails queue was not run
    app.run_worker(wait=False)
    assert shop.sent == ["digest"]


def test_async_defer_and_worker(app: procrastinate.App) -> None:
    async def main() -> None:
        await send_receipt.defer_async(order_id=1)
        await send_receipt.batch_defer_async({"order_id": 2}, {"order_id": 3})
        await app.run_worker_async(wait=False, install_signal_handlers=False)

    anyio.run(main)
    assert sorted(shop.sent) == ["receipt 1", "receipt 2", "receipt 3"]
    assert {j["status"] for j in app.connector.jobs.values()} == {"succeeded"}


def test_the_app_is_back_on_its_own_connector_after_the_fixture() -> None:
    assert not isinstance(shop.app.connector, testing.InMemoryConnector)
    assert testing.InMemoryConnector is testing.TestDatabaseConnector


def test_pytest_plugin_fixtures_in_a_user_project(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tracedjobs.testing.pytest_plugin"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\ntracedjobs_app = tests.compat.apps.shop:app\n")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from tests.compat.apps import shop

            def test_one(tracedjobs_app, tracedjobs_connector):
                assert tracedjobs_app is shop.app
                assert tracedjobs_app.connector is tracedjobs_connector
                shop.send_receipt.defer(order_id=1)
                tracedjobs_app.run_worker(wait=False)
                assert shop.sent == ["receipt 1"]

            def test_two_starts_empty(tracedjobs_connector):
                assert len(tracedjobs_connector.jobs) == 0
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
