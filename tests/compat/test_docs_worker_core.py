"""Procrastinate's documented behaviour that came with the worker-core rework (issue 10):
connector, worker options, cancellation of the worker task, job manager, semantics.

Written from its how-to guides and API reference like test_docs_api.py; the semantics
rules are spelled out in the tests at the end (abort then exception; lock ordering).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict

import tracedjobs as procrastinate
from tests.compat.conftest import run, status
from tracedjobs import exceptions

ROOT = Path(__file__).resolve().parents[2]


# -- connector (howto/basics/connector, open_connection, custom_json_encoder_decoder) -------


def test_explicit_open_and_close(app: procrastinate.App) -> None:
    @app.task
    def t() -> None: ...

    app.open()
    t.defer()
    app.close()

    async def main() -> None:
        await app.open_async()
        await t.defer_async()
        await app.close_async()  # type: ignore[attr-defined]
        await app.connector.open_async()  # type: ignore[attr-defined]
        await app.connector.close_async()

    anyio.run(main)
    assert len(app.job_manager.list_jobs()) == 2


def test_custom_json_encoder_and_decoder(db_url: str) -> None:
    def encode(obj: Any) -> Any:
        if isinstance(obj, datetime.datetime):
            return obj.isoformat()
        raise TypeError()

    def decode(dict_: dict[str, Any]) -> dict[str, Any]:
        if "dt" in dict_:
            dict_["dt"] = datetime.datetime.fromisoformat(dict_["dt"])
        return dict_

    json_dumps = functools.partial(json.dumps, default=encode)
    json_loads = functools.partial(json.loads, object_hook=decode)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(  # type: ignore[call-arg]
            conninfo=db_url, json_dumps=json_dumps, json_loads=json_loads
        )
    )
    received: list[Any] = []

    @app.task
    def at(dt: datetime.datetime) -> None:
        received.append(dt)

    moment = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    try:
        at.defer(dt=moment)
        run(app)
    finally:
        app.close()
    assert received == [moment]


def test_psycopg_connector_without_conninfo_uses_libpq_environment(
    db_url: str, tmp_path: Path
) -> None:
    params = conninfo_to_dict(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDJOBS_", "PG"))}
    env.update(
        PGHOST=str(params.get("host", "")),
        PGPORT=str(params.get("port", "5432")),
        PGUSER=str(params.get("user", "")),
        PGDATABASE=str(params["dbname"]),
        TRACEDJOBS_HOME=str(tmp_path / "home"),
        PYTHONPATH=str(ROOT),
    )
    code = (
        "import tracedjobs as procrastinate\n"
        "app = procrastinate.App(connector=procrastinate.PsycopgConnector())\n"
        "app.task(name='t')(lambda: None)\n"
        "print(app.configure_task('t').defer())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT task_name FROM tracedjobs_jobs").fetchall() == [("t",)]
    assert not (tmp_path / "home" / "pgdata").exists()  # the embedded server never started


def test_psycopg_connector_kwargs(db_url: str, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from psycopg.conninfo import conninfo_to_dict\n"
        "import tracedjobs as procrastinate\n"
        "connector = procrastinate.PsycopgConnector(kwargs=conninfo_to_dict(sys.argv[1]))\n"
        "app = procrastinate.App(connector=connector)\n"
        "app.task(name='t')(lambda: None)\n"
        "print(app.configure_task('t').defer())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDJOBS_", "PG"))}
    env.update(TRACEDJOBS_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code, db_url], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT task_name FROM tracedjobs_jobs").fetchall() == [("t",)]
    assert not (tmp_path / "home" / "pgdata").exists()  # the embedded server never started


# -- worker options (App.run_worker_async reference, howto/production/*) ---------------------


def test_procrastinate_worker_options_are_accepted(app: procrastinate.App) -> None:
    seen: list[Any] = []

    @app.task(pass_context=True)
    def t(context: procrastinate.JobContext) -> None:
        seen.append(context.additional_context["http_session"])

    t.defer()
    run(
        app,
        fetch_job_polling_interval=0.5,
        abort_job_polling_interval=0.5,
        shutdown_graceful_timeout=1.0,
        listen_notify=False,
        delete_jobs="never",
        additional_context={"http_session": "session"},
        update_heartbeat_interval=1,
        stalled_worker_timeout=5,
    )
    assert seen == ["session"]


def test_delete_jobs_on_completion(app: procrastinate.App) -> None:
    @app.task
    def ok() -> None: ...

    @app.task
    def ko() -> None:
        raise ValueError

    ids = [ok.defer(), ko.defer()]
    run(app, delete_jobs="successful")
    assert [j.id for j in app.job_manager.list_jobs()] == [ids[1]]
    ids = [ok.defer(), ko.defer()]
    run(app, delete_jobs="always")
    assert [j.id for j in app.job_manager.list_jobs()] == [ids[1] - 2]


def test_context_worker_queues(app: procrastinate.App) -> None:
    queues: list[Any] = []

    @app.task(pass_context=True, queue="a")
    def t(context: procrastinate.JobContext) -> None:
        queues.append(list(context.worker_queues))  # type: ignore[attr-defined]

    t.defer()
    run(app, queues=["a", "b"])
    assert queues == [["a", "b"]]


# -- cancellation of the worker task (howto/advanced/shutdown) ------------------------------


def test_cancelling_the_worker_task_aborts_its_jobs_after_the_graceful_timeout(
    app: procrastinate.App,
) -> None:
    @app.task
    async def long() -> None:
        await asyncio.sleep(60)

    async def main() -> int:
        job_id = await long.defer_async()
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(shutdown_graceful_timeout=0.5, install_signal_handlers=False)
            )
            for _ in range(1000):  # up to ~20 s
                if str(await app.job_manager.get_job_status_async(job_id)) == "doing":
                    break
                if worker.done():
                    worker.result()  # the worker ended early: say why
                await asyncio.sleep(0.02)
            worker.cancel()
            try:
                await asyncio.wait_for(worker, timeout=20)
            except asyncio.CancelledError:
                pass
        return job_id

    job_id = asyncio.run(main())
    assert status(app, job_id) == "aborted"


def test_wait_for_timeout_aborts_a_cooperative_sync_job(app: procrastinate.App) -> None:
    @app.task(pass_context=True)
    def polite(context: procrastinate.JobContext) -> None:
        for _ in range(1000):  # at most ~10 s: never outlive the test by long
            if context.should_abort():
                raise exceptions.JobAborted
            time.sleep(0.01)

    async def main() -> int:
        job_id = await polite.defer_async()
        async with app.open_async():
            try:
                await asyncio.wait_for(
                    app.run_worker_async(
                        shutdown_graceful_timeout=0.2, install_signal_handlers=False
                    ),
                    timeout=1.5,
                )
            except TimeoutError:
                pass
        return job_id

    assert status(app, asyncio.run(main())) == "aborted"


# -- job manager (howto/advanced/cancellation, external_connection, reference) --------------


def test_cancel_with_delete_job_and_unknown_ids(app: procrastinate.App, db_url: str) -> None:
    @app.task
    def t() -> None: ...

    job_id = t.defer()
    assert app.job_manager.cancel_job_by_id(job_id, delete_job=True) is True  # type: ignore[call-arg]
    assert app.job_manager.list_jobs() == []
    assert app.job_manager.cancel_job_by_id(999_999) is False

    async def unknown_async() -> bool:
        return await app.job_manager.cancel_job_by_id_async(999_999)

    assert anyio.run(unknown_async) is False
    other = t.defer()
    with psycopg.connect(db_url) as conn:
        assert app.job_manager.cancel_job_by_id(other, connection=conn) is True  # type: ignore[call-arg]
        conn.rollback()
    assert status(app, other) == "todo"


def test_listing_api(app: procrastinate.App) -> None:
    @app.task(queue="q1", lock="L")
    def a() -> None: ...

    @app.task(queue="q2")
    def b() -> None: ...

    first = a.configure(queueing_lock="QL").defer()
    b.defer()
    b.defer()
    manager: Any = app.job_manager

    async def main() -> None:
        assert [j.id for j in await manager.list_jobs_async(id=first)] == [first]
        assert len(list(await manager.list_jobs_async(queue="q2"))) == 2
        assert len(list(await manager.list_jobs_async(task=b.name, status="todo"))) == 2
        assert [j.id for j in await manager.list_jobs_async(lock="L")] == [first]
        assert [j.id for j in await manager.list_jobs_async(queueing_lock="QL")] == [first]
        queues = {q["name"]: q for q in await manager.list_queues_async()}
        assert queues["q2"]["jobs_count"] == 2 and queues["q2"]["todo"] == 2
        tasks = {t["name"]: t for t in await manager.list_tasks_async()}
        assert tasks[a.name]["jobs_count"] == 1
        locks = {lk["name"]: lk for lk in await manager.list_locks_async()}
        assert locks["L"]["jobs_count"] == 1

    anyio.run(main)
    assert [j.id for j in manager.list_jobs(id=first)] == [first]
    assert {q["name"] for q in manager.list_queues()} == {"q1", "q2"}
    assert {t["name"] for t in manager.list_tasks()} == {a.name, b.name}
    assert {lk["name"] for lk in manager.list_locks()} == {"L"}


# -- semantics (see ../_notes/compat-semantics.md) ------------------------------------------


def test_a_job_asked_to_abort_that_raises_ends_failed_and_is_not_retried(
    app: procrastinate.App,
) -> None:
    @app.task(pass_context=True, retry=3)
    def stubborn(context: procrastinate.JobContext) -> None:
        for _ in range(1000):  # at most ~10 s: never outlive the test by long
            if context.should_abort():
                raise ValueError("cleanup went wrong")
            time.sleep(0.01)

    async def main() -> int:
        job_id = await stubborn.defer_async()
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run_async, app))
            with anyio.fail_after(30):
                while str(await app.job_manager.get_job_status_async(job_id)) != "doing":
                    await anyio.sleep(0.02)
            await app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        return job_id

    job_id = anyio.run(main)
    job = app.job_manager.get_job(job_id)
    assert (job.status, job.attempts) == ("failed", 1)


async def run_async(app: procrastinate.App) -> None:
    await app.run_worker_async(wait=False, install_signal_handlers=False)


def test_jobs_sharing_a_lock_run_by_priority_then_defer_order(app: procrastinate.App) -> None:
    order: list[str] = []

    @app.task(lock="customer")
    def t(label: str) -> None:
        order.append(label)

    t.configure(priority=0).defer(label="first deferred, priority 0")
    t.configure(priority=5).defer(label="second deferred, priority 5")
    t.configure(priority=5).defer(label="third deferred, priority 5")
    run(app, concurrency=3)
    assert order == [
        "second deferred, priority 5",
        "third deferred, priority 5",
        "first deferred, priority 0",
    ]


def test_a_waiting_higher_priority_job_of_a_lock_blocks_lower_ones(
    app: procrastinate.App,
) -> None:
    """Procrastinate: a todo job with the same lock and a higher priority blocks, even if
    it is scheduled in the future (its claim query does not look at scheduled_at)."""

    @app.task(lock="customer")
    def t(label: str) -> None: ...

    low = t.configure(priority=0).defer(label="low, ready")
    t.configure(priority=5, schedule_in={"hours": 1}).defer(label="high, later")
    run(app)
    assert status(app, low) == "todo"


def test_log_records_carry_the_action_extra(app: procrastinate.App) -> None:
    """howto/production/logging: every record has an ``action`` users filter on."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    @app.task
    def ok() -> None: ...

    @app.task
    def ko() -> None:
        raise ValueError("no")

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("tracedjobs")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        ok.defer()
        ko.defer()
        run(app, name="logged")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    actions = [getattr(r, "action", None) for r in records]
    for expected in ("start_worker", "start_job", "job_success", "job_error", "stop_worker"):
        assert expected in actions, actions
    (success,) = [r for r in records if getattr(r, "action", None) == "job_success"]
    assert success.job["task_name"] == ok.name  # type: ignore[attr-defined]
    assert success.worker["name"] == "logged"  # type: ignore[attr-defined]
    (error,) = [r for r in records if getattr(r, "action", None) == "job_error"]
    assert error.levelno == logging.ERROR
