"""Stalled jobs: get_stalled_jobs, retry_job, automatic rescue and the one heartbeat cutoff."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

import tracedjobs
from tests.helpers import query, run_cli, scalar
from tracedjobs import heartbeat, retry
from tracedjobs.jobs import Job
from tracedjobs.store import PostgresStore, WorkerInfo


def _tasks(app: tracedjobs.App) -> None:
    app.task(name="work", retry=3)(lambda **_: None)
    app.task(name="other", queue="elsewhere", retry=3)(lambda **_: None)
    app.task(name="once", on_lost="fail", retry=3)(lambda **_: None)


@contextlib.asynccontextmanager
async def _store(app: tracedjobs.App) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(app.connector, name="test-store")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _claim(
    db_url: str, app: tracedjobs.App, *, age: float = 0.0, limit: int = 10, drop_row: bool = False
) -> tuple[str, list[int]]:
    """Register a (fake) worker, claim up to ``limit`` jobs for it, then age its heartbeat
    (and its jobs' start) by ``age`` seconds, or delete its row with ``drop_row``.
    Returns the worker id and the claimed job ids."""
    worker_id = str(uuid.uuid4())
    info = WorkerInfo(
        id=worker_id, name=f"fake-{worker_id[:4]}", hostname="test", pid=1, queues=None,
        concurrency=limit,
    )
    async with _store(app) as store:
        await store.register(info)
        batch = await store.finish_and_claim([], worker=info, limit=limit)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE tracedjobs_workers SET last_heartbeat_at = now() - make_interval(secs => %s) "
            "WHERE id = %s",
            (age, worker_id),
        )
        await conn.execute(
            "UPDATE tracedjobs_jobs SET started_at = now() - make_interval(secs => %s), "
            "created_at = created_at - make_interval(secs => %s) WHERE worker_id = %s",
            (age, age, worker_id),
        )
        if drop_row:
            await conn.execute("DELETE FROM tracedjobs_workers WHERE id = %s", (worker_id,))
    return worker_id, [r["id"] for r in batch.claimed]


def _rescue(app: tracedjobs.App, *, exclude: str | None = None) -> list[tuple[Job, Any]]:
    async def go() -> list[tuple[Job, Any]]:
        async with _store(app) as store:
            return await store.rescue_dead_workers(
                30, functools.partial(heartbeat.decide_lost, app), exclude=exclude
            )

    return anyio.run(go)


def _stalled_ids(app: tracedjobs.App, **kwargs: Any) -> list[int]:
    async def go() -> list[int]:
        return [j.id for j in await app.job_manager.get_stalled_jobs(**kwargs)]

    return anyio.run(go)


def test_get_stalled_jobs_and_retry_job_are_coroutines(app: tracedjobs.App) -> None:
    assert inspect.iscoroutinefunction(app.job_manager.get_stalled_jobs)
    assert inspect.iscoroutinefunction(app.job_manager.retry_job)
    params = inspect.signature(app.job_manager.get_stalled_jobs).parameters
    assert list(params)[:3] == ["seconds_since_heartbeat", "queue", "task_name"]
    assert params["seconds_since_heartbeat"].default == 30


def test_get_stalled_jobs_selects_by_worker_heartbeat(db_url: str, app: tracedjobs.App) -> None:
    _tasks(app)
    alive_job = app.configure_task("work").defer()
    _, alive_ids = anyio.run(functools.partial(_claim, db_url, app, age=5, limit=1))
    stale_job = app.configure_task("work").defer()
    _, stale_ids = anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))
    gone_job = app.configure_task("other").defer()
    gone_worker, gone_ids = anyio.run(functools.partial(_claim, db_url, app, limit=1))
    query(db_url, "DELETE FROM tracedjobs_workers WHERE id = %s", (gone_worker,))
    assert (alive_ids, stale_ids, gone_ids) == ([alive_job], [stale_job], [gone_job])

    # Default: 30 s. A job whose worker row is gone counts as stalled at once.
    assert _stalled_ids(app) == [stale_job, gone_job]
    assert _stalled_ids(app, seconds_since_heartbeat=120) == [gone_job]
    assert _stalled_ids(app, seconds_since_heartbeat=1) == [alive_job, stale_job, gone_job]
    assert _stalled_ids(app, queue="elsewhere") == [gone_job]
    assert _stalled_ids(app, task_name="work") == [stale_job]
    # The sync twin (used by `tracedjobs stalled`) agrees.
    assert [j.id for j in app.job_manager.get_stalled_jobs_sync()] == [stale_job, gone_job]


def test_nb_seconds_is_deprecated_and_selects_by_time_in_doing(
    db_url: str, app: tracedjobs.App
) -> None:
    _tasks(app)
    job_id = app.configure_task("work").defer()
    anyio.run(functools.partial(_claim, db_url, app, age=0, limit=1))
    # Running 100 s on a worker that heartbeats: alive, yet nb_seconds selects it.
    query(db_url, "UPDATE tracedjobs_jobs SET started_at = now() - interval '100 s'")
    assert _stalled_ids(app) == []
    with pytest.warns(DeprecationWarning, match="nb_seconds"):
        assert _stalled_ids(app, nb_seconds=50) == [job_id]
    with pytest.warns(DeprecationWarning):
        assert _stalled_ids(app, nb_seconds=500) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _stalled_ids(app, seconds_since_heartbeat=30)  # no warning without nb_seconds


def test_retry_job_puts_a_stalled_job_back_with_its_attempt_lost(
    db_url: str, app: tracedjobs.App
) -> None:
    _tasks(app)
    job_id = app.configure_task("work").defer()
    anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))

    async def go() -> None:
        for job in await app.job_manager.get_stalled_jobs():
            await app.job_manager.retry_job(job)

    anyio.run(go)
    job = app.job_manager.get_job(job_id)
    assert job.status == tracedjobs.Status.TODO and job.worker_id is None
    # A lost attempt does not spend the retry budget; it is counted apart.
    assert (job.attempts, job.lost_attempts) == (0, 1)
    assert [a.outcome for a in job.attempt_records] == ["lost"]
    assert [e.type for e in job.events] == ["deferred", "started", "lost", "retried"]
    assert _stalled_ids(app) == []


def test_retry_job_of_an_attempt_that_already_ended_does_nothing(
    db_url: str, app: tracedjobs.App
) -> None:
    """Two periodic runs may see the same stalled job; by the time the second one retries
    it the job may be running again on a live worker: that attempt must be left alone."""
    _tasks(app)
    job_id = app.configure_task("work").defer()
    anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))

    async def stale_copies() -> list[Job]:
        return await app.job_manager.get_stalled_jobs()

    first, second = anyio.run(stale_copies), anyio.run(stale_copies)

    async def retry(job: Job) -> None:
        await app.job_manager.retry_job(job)

    anyio.run(retry, first[0])
    live_worker, claimed = anyio.run(functools.partial(_claim, db_url, app, limit=1))
    assert claimed == [job_id]
    anyio.run(retry, second[0])  # stale: its attempt was already retried

    job = app.job_manager.get_job(job_id)
    assert job.status == tracedjobs.Status.DOING and job.worker_id == live_worker
    assert [a.outcome for a in job.attempt_records] == ["lost", None]
    assert [e.type for e in job.events].count("retried") == 1


def test_concurrent_rescuers_never_both_act(db_url: str, app: tracedjobs.App) -> None:
    _tasks(app)
    app.configure_task("work").batch_defer(*[{} for _ in range(12)])
    for _ in range(4):
        anyio.run(functools.partial(_claim, db_url, app, age=60, limit=3))
    decide = functools.partial(heartbeat.decide_lost, app)
    results: list[list[tuple[Job, Any]]] = []

    async def rescuer() -> None:
        async with _store(app) as store:
            results.append(await store.rescue_dead_workers(30, decide))

    async def race() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(rescuer)

    anyio.run(race)
    rescued = [job.id for batch in results for job, _ in batch]
    assert len(rescued) == len(set(rescued)) == 12, results
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_workers") == 0
    assert query(db_url, "SELECT outcome, count(*) FROM tracedjobs_attempts GROUP BY 1") == [
        ("lost", 12)
    ]
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_events WHERE type = 'lost'") == 12
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'todo'") == 12


def test_rescue_follows_each_tasks_retry_strategy_and_on_lost(
    db_url: str, app: tracedjobs.App
) -> None:
    _tasks(app)
    app.task(name="no_retry")(lambda **_: None)

    class Broken(retry.BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job: Job) -> None:
            raise RuntimeError("strategy bug")

    app.task(name="broken", retry=Broken())(lambda **_: None)
    ids = {name: app.configure_task(name).defer() for name in ("work", "once", "no_retry", "broken")}
    anyio.run(functools.partial(_claim, db_url, app, age=60))

    assert len(_rescue(app)) == 4
    # A lost attempt is the worker's failure: the task's retry strategy is not asked (nor
    # spent); only on_lost="fail" keeps a job from running again.
    status = {name: app.job_manager.get_job_status(i) for name, i in ids.items()}
    assert status == {"work": "todo", "once": "failed", "no_retry": "todo", "broken": "todo"}
    for job_id in ids.values():
        job = app.job_manager.get_job(job_id)
        assert [a.outcome for a in job.attempt_records] == ["lost"]
        assert job.attempts == 0


def test_a_job_lost_again_and_again_ends_failed(db_url: str, app: tracedjobs.App) -> None:
    _tasks(app)
    job_id = app.configure_task("work").defer()
    for run in range(1, heartbeat.MAX_LOST_ATTEMPTS + 1):
        _, claimed = anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))
        assert claimed == [job_id]
        assert len(_rescue(app)) == 1
        job = app.job_manager.get_job(job_id)
        assert job.lost_attempts == run
        # Each run has its own number, lost ones included.
        assert [a.attempt for a in job.attempt_records] == list(range(1, run + 1))
    assert job.status == tracedjobs.Status.FAILED
    assert job.attempts == 0
    last = job.attempt_records[-1]
    assert last.outcome == "lost" and f"lost {heartbeat.MAX_LOST_ATTEMPTS} times" in (
        last.error_message or ""
    )


def test_rescuer_never_rescues_itself_nor_a_live_worker(db_url: str, app: tracedjobs.App) -> None:
    _tasks(app)
    app.configure_task("work").batch_defer({}, {})
    me, _ = anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))
    anyio.run(functools.partial(_claim, db_url, app, age=5, limit=1))

    assert _rescue(app, exclude=me) == []
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_workers") == 2
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'doing'") == 2
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_attempts") == 0


def test_jobs_with_no_worker_row_are_rescued_once_older_than_the_cutoff(
    db_url: str, app: tracedjobs.App
) -> None:
    """A worker declared dead while paused may claim a job before its heartbeat registers it
    again: that fresh job must not be rescued under its feet. An old one is."""
    _tasks(app)
    fresh, old = app.configure_task("work").batch_defer({}, {})
    anyio.run(functools.partial(_claim, db_url, app, limit=1, drop_row=True))
    anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1, drop_row=True))

    assert [job.id for job, _ in _rescue(app)] == [old]
    assert app.job_manager.get_job_status(fresh) == "doing"


def test_one_cutoff_decides_liveness_for_stalled_jobs_and_worker_listings(
    db_url: str, app: tracedjobs.App
) -> None:
    _tasks(app)
    app.configure_task("work").batch_defer(*[{} for _ in range(4)])
    by_age = {}
    for age in (10, 29, 31, 100):
        worker_id, job_ids = anyio.run(functools.partial(_claim, db_url, app, age=age, limit=1))
        by_age[age] = (worker_id, job_ids[0])
    alive = {str(w["id"]) for w in app.job_manager.list_workers(30) if w["alive"]}
    assert alive == {by_age[10][0], by_age[29][0]}
    assert set(_stalled_ids(app, seconds_since_heartbeat=30)) == {by_age[31][1], by_age[100][1]}
    cutoff = app.job_manager.heartbeat_cutoff(30)
    db_now = scalar(db_url, "SELECT now()")
    assert 29 < (db_now - cutoff).total_seconds() < 60


def test_every_liveness_query_uses_the_cutoff_function(repo_root: Path) -> None:
    text = (repo_root / "tracedjobs" / "sql" / "queries.sql").read_text()
    queries = dict(re.findall(r"-- name: (\w+)\n(.*?)(?=\n-- name: |\Z)", text, re.S))
    for name in ("dead_workers", "claim_dead_worker", "prune_dead_workers", "get_stalled_jobs",
                 "list_workers", "lock_orphan_jobs"):
        assert "tracedjobs_heartbeat_cutoff(" in queries[name], name
    for name, body in queries.items():
        # Nobody compares a heartbeat with now() by hand.
        assert not re.search(r"last_heartbeat_at\s*[<>]=?\s*now\(\)", body), name


def test_cli_stalled_lists_and_retries(db_url: str, app: tracedjobs.App) -> None:
    _tasks(app)
    job_id = app.configure_task("work").defer()
    assert run_cli(db_url, "stalled").stdout.strip() == "no stalled jobs"
    anyio.run(functools.partial(_claim, db_url, app, age=60, limit=1))

    listed = run_cli(db_url, "stalled", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    assert run_cli(db_url, "stalled", "--seconds", "2m").stdout.strip() == "no stalled jobs"

    retried = run_cli(db_url, "stalled", "--retry")
    assert retried.returncode == 0, retried.stderr
    assert f"{job_id}\twork\tdefault" in retried.stdout
    assert "retried 1 stalled job(s)" in retried.stdout
    assert app.job_manager.get_job_status(job_id) == "todo"


def test_worker_rejects_a_stalled_timeout_not_above_the_heartbeat_interval(db_url: str) -> None:
    result = run_cli(
        db_url, "worker", "--app", "tests.apps.basic:app",
        "--heartbeat-interval", "5", "--stalled-timeout", "5",
    )
    assert result.returncode != 0
    assert "stalled_worker_timeout must be longer than update_heartbeat_interval" in result.stderr
    assert "Traceback" not in result.stderr
