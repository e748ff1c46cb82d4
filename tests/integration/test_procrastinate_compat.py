"""Migrating from Procrastinate takes an import change: the names it uses exist here."""

from __future__ import annotations

import anyio
import pytest

import tracedjobs as procrastinate
from tests.helpers import run_cli


def test_connector_open_configure_task_and_status(db_url: str) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))

    @app.task(name="sum", queue="sums")
    def sum_task(a: int, b: int) -> int:
        return a + b

    with app.open():
        job_id = app.configure_task(name="sum").defer(a=1, b=2)
        assert app.job_manager.get_job_status(job_id) == procrastinate.Status.TODO
        app.run_worker(wait=False, install_signal_handlers=False)
        assert app.job_manager.get_job_status(job_id) is procrastinate.Status.SUCCEEDED

    async def main() -> procrastinate.Status:
        async with app.open_async():
            job_id = await sum_task.defer_async(a=2, b=3)
            await app.run_worker_async(wait=False, install_signal_handlers=False)
            return await app.job_manager.get_job_status_async(job_id)

    assert anyio.run(main) == "succeeded"


def test_exceptions_module_and_utils() -> None:
    assert issubclass(procrastinate.exceptions.AlreadyEnqueued, Exception)
    assert issubclass(procrastinate.exceptions.JobAborted, Exception)
    assert procrastinate.utils.utcnow().tzinfo is not None
    with pytest.raises(procrastinate.exceptions.TaskNotFound):
        procrastinate.App(database_url="postgresql://x@127.0.0.1:1/x").configure_task(
            name="nope", allow_unknown=False
        )


def test_tracedjobs_app_env_var_selects_the_app(db_url: str) -> None:
    result = run_cli(
        db_url, "defer", "record", '{"label": "env"}', TRACEDJOBS_APP="tests.apps.basic:app"
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0


def test_task_is_still_callable_inline(db_url: str) -> None:
    app = procrastinate.App(database_url=db_url)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    assert double.name.endswith("double")
