"""Worker core v2 (issue 10, and the worker side of issue 12): options, cancellation,
the connector's one door, the job manager's listing API, lock ordering."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import psycopg
import pytest

import tracedjobs
from tests.helpers import query, scalar
from tests.integration.running import (
    FAST,
    StoreWrapper,
    finish,
    outcomes,
    running_worker,
    wait_for_status,
)
from tracedjobs.jobs import AttemptResult
from tracedjobs.store import Batch, PostgresStore, WorkerInfo
from tracedjobs.worker import Worker


def test_an_unknown_worker_option_is_refused_before_anything_starts(app: tracedjobs.App) -> None:
    with pytest.raises(TypeError, match=r"unknown worker option\(s\) concurency; valid options"):
        app.run_worker(concurency=4)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="delete_jobs must be one of never, successful, always"):
        app.run_worker(delete_jobs="sometimes")  # type: ignore[arg-type]


def test_procrastinate_worker_options_are_honoured(app: tracedjobs.App) -> None:
    seen: list[dict[str, Any]] = []

    @app.task(pass_context=True)
    def ok(context: tracedjobs.JobContext) -> None:
        seen.append(dict(context.additional_context))
        context.additional_context["mutated"] = True  # a copy per job

    @app.task
    def boom() -> None:
        raise ValueError("kept")

    ids = [ok.defer(), ok.defer(), boom.defer()]
    app.run_worker(
        wait=False,
        install_signal_handlers=False,
        concurrency=2,
        fetch_job_polling_interval=0.5,
        abort_job_polling_interval=0.5,
        shutdown_graceful_timeout=5,
        listen_notify=False,
        delete_jobs="successful",
        additional_context={"db": "pool"},
        update_heartbeat_interval=1,
        stalled_worker_timeout=5,
    )
    assert seen == [{"db": "pool"}, {"db": "pool"}]
    # Successful jobs were deleted with their history; the failed one is kept.
    assert [j.id for j in app.job_manager.list_jobs()] == [ids[2]]
    assert app.job_manager.get_job_status(ids[2]) == "failed"


def test_cancelling_run_worker_async_aborts_running_jobs_after_the_graceful_timeout(
    app: tracedjobs.App,
) -> None:
    """As in Procrastinate: the cancelled worker stops fetching, lets running jobs run for
    shutdown_graceful_timeout, then aborts and records them before the cancellation ends."""
    started = anyio.Event()
    reasons: list[tracedjobs.AbortReason | None] = []

    @app.task(pass_context=True)
    async def forever(context: tracedjobs.JobContext) -> None:
        reasons.append(context.abort_reason())
        started.set()
        try:
            await anyio.sleep(3600)
        finally:
            reasons.append(context.abort_reason())

    async def main() -> int:
        job_id = await forever.defer_async()
        worker = app.run_worker_async(
            install_signal_handlers=False, shutdown_graceful_timeout=0.5, **_FAST_OPTIONS
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker, timeout=3)
        assert started.is_set()
        await app.connector.close_async()
        return job_id

    job_id = anyio.run(main)
    job = app.job_manager.get_job(job_id)
    assert job.status == tracedjobs.Status.ABORTED
    assert outcomes(job) == ["aborted"]
    assert "shutting down" in (job.attempt_records[0].error_message or "")
    assert reasons == [None, tracedjobs.AbortReason.SHUTDOWN]  # Procrastinate's abort_reason()
    assert app.job_manager.list_workers() == []  # unregistered


_FAST_OPTIONS: dict[str, Any] = {
    "update_heartbeat_interval": 0.5,
    "stalled_worker_timeout": 5.0,
    "fetch_job_polling_interval": 1.0,
}


def test_json_dumps_and_loads_of_the_connector_encode_task_arguments(db_url: str) -> None:
    def dumps(value: Any) -> str:
        return json.dumps(value, default=lambda d: {"__date__": d.isoformat()})

    def loads(text: str | bytes) -> Any:
        def hook(obj: dict[str, Any]) -> Any:
            return datetime.date.fromisoformat(obj["__date__"]) if "__date__" in obj else obj

        return json.loads(text, object_hook=hook)

    app = tracedjobs.App(
        connector=tracedjobs.PsycopgConnector(conninfo=db_url, json_dumps=dumps, json_loads=loads)
    )
    got: list[Any] = []

    @app.task
    def on(day: datetime.date) -> None:
        got.append(day)

    job_id = on.defer(day=datetime.date(2026, 12, 1))
    assert app.job_manager.get_job(job_id).args == {"day": datetime.date(2026, 12, 1)}
    finish(app, job_id)
    assert got == [datetime.date(2026, 12, 1)]
    app.close()


def test_an_empty_connector_means_libpq_defaults_not_the_embedded_server(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    monkeypatch.setenv("TRACEDJOBS_DATABASE_URL", "postgresql://nobody@203.0.113.1/unused")
    monkeypatch.setenv("PGHOST", str(params["host"]))
    monkeypatch.setenv("PGPORT", str(params.get("port", 5432)))
    monkeypatch.setenv("PGUSER", str(params["user"]))
    monkeypatch.setenv("PGDATABASE", str(params["dbname"]))
    app = tracedjobs.App(connector=tracedjobs.PsycopgConnector())
    assert app.connector.url == ""
    assert not app.connector.is_embedded
    assert app.job_manager.check_connection()
    assert app.check_schema() >= 1
    app.close()


def test_open_and_close_like_procrastinate(db_url: str) -> None:
    connector = tracedjobs.PsycopgConnector(conninfo=db_url, max_size=2)
    app = tracedjobs.App(connector=connector)
    with app.open():
        assert app.job_manager.check_connection()
    connector.open()
    connector.close()

    async def main() -> bool:
        async with app.open_async():
            return await app.job_manager.check_connection_async()

    assert anyio.run(main)


def test_listing_api_in_procrastinates_shape(app: tracedjobs.App) -> None:
    @app.task(queue="mail", lock="user:1")
    def send() -> None: ...

    @app.task(queue="reports")
    def build() -> None: ...

    a = send.defer()
    send.configure(queueing_lock="only-one").defer()
    build.defer()
    manager = app.job_manager
    assert [j.id for j in manager.list_jobs(id=a)] == [a]
    assert len(manager.list_jobs(queue="mail", task=send.name, status="todo")) == 2
    assert len(manager.list_jobs(queueing_lock="only-one")) == 1
    assert len(manager.list_jobs(lock="user:1")) == 2
    queues = manager.list_queues()
    assert [(q["name"], q["jobs_count"], q["todo"], q["failed"]) for q in queues] == [
        ("mail", 2, 2, 0),
        ("reports", 1, 1, 0),
    ]
    assert {t["name"] for t in manager.list_tasks()} == {send.name, build.name}
    assert [(lk["name"], lk["jobs_count"]) for lk in manager.list_locks()] == [("user:1", 2)]
    assert anyio.run(lambda: manager.list_queues_async(queue="reports"))[0]["jobs_count"] == 1
    assert manager.cancel_job_by_id(a, delete_job=True) is True
    assert manager.list_jobs(id=a) == []
    assert manager.cancel_job_by_id(a) is False


def test_jobs_sharing_a_lock_run_by_priority_then_defer_order(app: tracedjobs.App) -> None:
    """Procrastinate's rule: a job with a lock waits while another job with that lock runs
    or waits before it (higher priority, or same priority and deferred earlier)."""
    order: list[str] = []

    @app.task(lock="L")
    def step(label: str) -> None:
        order.append(label)

    step.defer(label="low-first")
    step.configure(priority=5).defer(label="high")
    step.defer(label="low-second")
    app.run_worker(wait=False, install_signal_handlers=False, concurrency=3, **_FAST_OPTIONS)
    assert order == ["high", "low-first", "low-second"]


class FlakyStore(StoreWrapper):
    """A real PostgresStore whose heartbeat and abort poll fail for a while."""

    def __init__(self, inner: PostgresStore, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures
        self.calls = 0

    async def heartbeat(self, worker_id: str) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction")
        return await self.inner.heartbeat(worker_id)

    async def aborting_job_ids(self, worker_id: str) -> set[int]:
        raise RuntimeError("a bug in the abort poll")

    async def finish_and_claim(
        self, finished: Sequence[AttemptResult], *, worker: WorkerInfo, limit: int,
        delete_statuses: Sequence[str] = (),
    ) -> Batch:
        return await self.inner.finish_and_claim(
            finished, worker=worker, limit=limit, delete_statuses=delete_statuses
        )


def test_side_loop_failures_never_cancel_running_jobs(
    app: tracedjobs.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def steady() -> None:
        await anyio.sleep(4)

    async def main() -> tuple[tracedjobs.Job, FlakyStore]:
        job_id = await steady.defer_async()
        store = FlakyStore(PostgresStore(app.connector, name=f"t-{uuid.uuid4().hex[:6]}"), 2)
        worker = Worker(app, store=store, **{**FAST, "abort_job_polling_interval": 0.2})
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                job = await wait_for_status(app, job_id)
                worker.stop()
        finally:
            await app.connector.close_async()
        return job, store

    job, store = anyio.run(main)
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert store.calls > 2  # the heartbeat loop was restarted after its failures
    messages = [r.getMessage() for r in caplog.records]
    # One line per state change, not one per failure.
    assert sum("heartbeat failed (ReadOnlySqlTransaction" in m for m in messages) == 1
    assert any("heartbeat recovered after 2 failed attempt(s)" in m for m in messages)
    assert sum("abort poll failed (RuntimeError: a bug in the abort poll)" in m for m in messages) == 1
    assert app.job_manager.list_workers() == []  # unregistered on the way out


def test_retention_deletes_old_jobs_that_ended_well_with_their_history(
    app: tracedjobs.App, db_url: str
) -> None:
    @app.task
    def ok() -> None: ...

    @app.task
    def boom() -> None:
        raise ValueError("kept for people to look at")

    old_ok, recent_ok, old_failed = ok.defer(), ok.defer(), boom.defer()
    finish(app, old_ok, recent_ok, old_failed)
    query(
        db_url,
        "UPDATE tracedjobs_jobs SET updated_at = now() - interval '2 hours' WHERE id = ANY(%s)",
        ([old_ok, old_failed],),
    )
    # A worker with a retention prunes as part of its maintenance pass.

    async def main() -> None:
        try:
            async with running_worker(app, retention=3600):
                with anyio.fail_after(20):
                    while any(j.id == old_ok for j in await app.job_manager.list_jobs_async()):
                        await anyio.sleep(0.05)
        finally:
            await app.connector.close_async()

    anyio.run(main)
    remaining = {j.id for j in app.job_manager.list_jobs()}
    assert remaining == {recent_ok, old_failed}
    for table in ("tracedjobs_attempts", "tracedjobs_events"):
        assert scalar(db_url, f"SELECT count(*) FROM {table} WHERE job_id = %s", (old_ok,)) == 0
    with pytest.raises(ValueError, match="retention must be a positive"):
        app.run_worker(retention=0)
