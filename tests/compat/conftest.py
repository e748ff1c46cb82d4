"""Fixtures of the compatibility suite: an App built the way Procrastinate's docs build it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tracedjobs as procrastinate


@pytest.fixture
def app(db_url: str) -> Iterator[procrastinate.App]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))
    yield app
    app.close()


def run(app: procrastinate.App, **options: Any) -> None:
    """Run the real worker in-process until no job is ready."""
    app.run_worker(wait=False, install_signal_handlers=False, **options)


def status(app: procrastinate.App, job_id: int) -> str:
    return str(app.job_manager.get_job_status(job_id))
