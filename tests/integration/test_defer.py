"""Deferring jobs: options, batches, transactions, bad arguments, queueing locks."""

from __future__ import annotations

import datetime

import anyio
import psycopg
import pytest

import tracedjobs
from tests.helpers import scalar
from tracedjobs.exceptions import AlreadyEnqueued


@pytest.fixture
def tasks(app: tracedjobs.App) -> dict[str, tracedjobs.Task]:
    @app.task(queue="emails", priority=3, lock="L", queueing_lock=None, name="send")
    async def send(to: str) -> None: ...

    @app.task(name="plain")
    def plain(**kwargs: object) -> None: ...

    return {"send": send, "plain": plain}


def test_defer_stores_the_job_with_task_options(app: tracedjobs.App, tasks: dict) -> None:
    job_id = tasks["send"].defer(to="a@b.c")
    job = app.job_manager.get_job(job_id)
    assert (job.task_name, job.queue_name, job.queue, job.priority, job.lock) == (
        "send",
        "emails",
        "emails",
        3,
        "L",
    )
    assert job.args == {"to": "a@b.c"}
    assert job.status == tracedjobs.Status.TODO and job.attempts == 0
    assert [e.type for e in job.events] == ["deferred"]
    assert job.attempt_records == []


def test_configure_overrides_options_and_schedules(app: tracedjobs.App, tasks: dict) -> None:
    before = tracedjobs.utils.utcnow()
    job_id = (
        tasks["send"]
        .configure(
            schedule_in={"seconds": 30}, priority=5, queue="q", lock="l2", queueing_lock="ql"
        )
        .defer(to="x")
    )
    job = app.job_manager.get_job(job_id)
    assert (job.queue_name, job.priority, job.lock, job.queueing_lock) == ("q", 5, "l2", "ql")
    assert job.scheduled_at is not None
    assert before + datetime.timedelta(seconds=29) < job.scheduled_at
    assert job.scheduled_at < before + datetime.timedelta(seconds=31)
    assert [e.type for e in job.events] == ["deferred", "scheduled"]
    detail = job.events[1].detail or {}
    assert datetime.datetime.fromisoformat(detail["scheduled_at"]) == job.scheduled_at

    at = tracedjobs.utils.utcnow() + datetime.timedelta(hours=1)
    job_id = tasks["plain"].configure(schedule_at=at).defer()
    assert app.job_manager.get_job(job_id).scheduled_at == at


def test_configure_rejects_naive_datetimes_and_both_schedules(tasks: dict) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tasks["plain"].configure(schedule_at=datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        tasks["plain"].configure(schedule_at=tracedjobs.utils.utcnow(), schedule_in={"seconds": 1})


def test_defer_async_and_batch_defer_async(app: tracedjobs.App, tasks: dict) -> None:
    async def main() -> tuple[int, list[int]]:
        one = await tasks["send"].defer_async(to="a")
        many = await tasks["send"].batch_defer_async({"to": "b"}, {"to": "c"}, {"to": "d"})
        await app.connector.close_async()
        return one, many

    one, many = anyio.run(main)
    assert many == sorted(many) and len(many) == 3 and one < many[0]
    jobs = {j.id: j for j in app.job_manager.list_jobs(task_name="send")}
    assert [jobs[i].args["to"] for i in many] == ["b", "c", "d"]


def test_batch_defer_of_many_jobs_keeps_order(app: tracedjobs.App, tasks: dict) -> None:
    ids = tasks["plain"].batch_defer(*({"n": i} for i in range(1000)))
    assert len(ids) == 1000
    # One row per job and nothing else: a job's `deferred` history entry is its row.
    assert scalar(app.connector.url, "SELECT count(*) FROM tracedjobs_events") == 0
    history = scalar(
        app.connector.url, "SELECT count(*) FROM tracedjobs_job_history WHERE type = 'deferred'"
    )
    assert history == 1000
    rows = app.job_manager.list_jobs(limit=1000)
    assert {j.id: j.args["n"] for j in rows} == {job_id: n for n, job_id in enumerate(ids)}


def test_non_json_argument_is_refused_naming_it_and_nothing_is_written(
    app: tracedjobs.App, tasks: dict
) -> None:
    with pytest.raises(TypeError, match=r"argument 'when'.*not JSON-serialisable"):
        tasks["plain"].defer(ok=1, when=datetime.datetime.now())
    with pytest.raises(TypeError, match="argument 'blob'"):
        tasks["plain"].batch_defer({"ok": 1}, {"blob": b"bytes"})
    assert scalar(app.connector.url, "SELECT count(*) FROM tracedjobs_jobs") == 0


def test_defer_in_callers_transaction_is_invisible_until_commit(
    app: tracedjobs.App, tasks: dict, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        job_id = tasks["plain"].defer(x=1, connection=conn)
        # Another connection does not see it yet.
        assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 0
        conn.commit()
    assert app.job_manager.get_job(job_id).status == "todo"


def test_rolled_back_transactional_defer_leaves_no_job(
    app: tracedjobs.App, tasks: dict, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        tasks["plain"].defer(x=1, connection=conn)
        tasks["plain"].batch_defer({"x": 2}, {"x": 3}, connection=conn)
        conn.rollback()
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 0
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_events") == 0


def test_async_transactional_defer(app: tracedjobs.App, tasks: dict, db_url: str) -> None:
    async def main() -> int:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            job_id = await tasks["send"].defer_async(to="t", connection=conn)
            await conn.rollback()
            await tasks["send"].defer_async(to="u", connection=conn)
            await conn.commit()
            return job_id

    rolled_back = anyio.run(main)
    jobs = app.job_manager.list_jobs()
    assert [j.args["to"] for j in jobs] == ["u"] and jobs[0].id != rolled_back


def test_queueing_lock_allows_one_waiting_job(app: tracedjobs.App, tasks: dict) -> None:
    deferrer = tasks["plain"].configure(queueing_lock="only-one")
    first = deferrer.defer(n=1)
    with pytest.raises(AlreadyEnqueued, match="only-one"):
        tasks["plain"].configure(queueing_lock="only-one").defer(n=2)
    assert isinstance(AlreadyEnqueued("x"), tracedjobs.exceptions.AlreadyEnqueued)
    # Once the first job is no longer waiting, another may be deferred.
    app.job_manager.cancel_job_by_id(first)
    tasks["plain"].configure(queueing_lock="only-one").defer(n=3)
    assert len(app.job_manager.list_jobs(status="todo")) == 1


def test_a_batch_with_a_taken_queueing_lock_writes_nothing(
    app: tracedjobs.App, tasks: dict
) -> None:
    tasks["plain"].configure(queueing_lock="ql").defer()
    with pytest.raises(AlreadyEnqueued):
        tasks["plain"].configure(queueing_lock="ql").batch_defer({"a": 1})
    assert len(app.job_manager.list_jobs()) == 1


def test_list_jobs_filters_newest_first_and_rejects_unknown_status(
    app: tracedjobs.App, tasks: dict
) -> None:
    a = tasks["plain"].defer()
    b = tasks["send"].defer(to="x")
    c = tasks["plain"].configure(queue="other").defer()
    assert [j.id for j in app.job_manager.list_jobs()] == [c, b, a]
    assert [j.id for j in app.job_manager.list_jobs(queue="emails")] == [b]
    assert [j.id for j in app.job_manager.list_jobs(task_name="plain", limit=1)] == [c]
    assert [j.id for j in app.job_manager.list_jobs(status="doing")] == []
    with pytest.raises(ValueError):
        app.job_manager.list_jobs(status="nonsense")
    assert [j.id for j in anyio.run(lambda: app.job_manager.list_jobs_async(queue="other"))] == [c]


def test_get_job_status_returns_a_status_enum(app: tracedjobs.App, tasks: dict) -> None:
    job_id = tasks["plain"].defer()
    status = app.job_manager.get_job_status(job_id)
    assert status is tracedjobs.Status.TODO and status == "todo"
    assert anyio.run(app.job_manager.get_job_status_async, job_id) is tracedjobs.Status.TODO
    with pytest.raises(tracedjobs.exceptions.JobNotFound):
        app.job_manager.get_job(10**9)


def test_async_defers_through_a_pool_given_to_open_async(app: tracedjobs.App, tasks: dict) -> None:
    """A pool of the application's own (Procrastinate's ``open_async(pool)``) may hold
    connections that are not in autocommit: a defer is committed when it returns, a failed
    one is rolled back, and the connection goes back to the pool usable."""
    from psycopg_pool import AsyncConnectionPool

    async def main() -> tuple[int, int]:
        async with AsyncConnectionPool(app.connector.url, min_size=1, max_size=1) as pool:
            await app.connector.open_async(pool)
            first = await tasks["plain"].configure(queueing_lock="q").defer_async(n=1)
            with pytest.raises(AlreadyEnqueued):
                await tasks["plain"].configure(queueing_lock="q").defer_async(n=2)
            second = await tasks["plain"].defer_async(n=3)
            async with pool.connection() as conn:  # the one connection, idle again
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            await app.connector.close_async()
            assert not pool.closed  # the application's pool is left to it
            return first, second

    ids = anyio.run(main)
    # Seen from another connection: both committed.
    assert sorted(j.id for j in app.job_manager.list_jobs()) == sorted(ids)
