"""Worker option ``prefetch``: up to N claimed jobs wait in the worker for a slot, so that a
freed slot starts the next job without a round trip. They wait as `doing`; at shutdown they
go back to the queue unstarted; an abort ends one `aborted` without running it; locks,
retries and the order of attempts hold."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import anyio
import psycopg
import pytest

import tracedjobs
from tests.conftest import installed_otel
from tests.helpers import query
from tests.integration.running import FAST, StoreWrapper, running_worker, wait_for_status
from tracedjobs.store import PostgresStore
from tracedjobs.worker import Worker


class Gate:
    """Jobs of the `held` task record that they started, then wait until let through."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.running = 0
        self.most_running = 0
        self.open = anyio.Event()


def held_task(app: tracedjobs.App, gate: Gate) -> Any:
    @app.task(name="held")
    async def held(n: int) -> None:
        gate.started.append(n)
        gate.running += 1
        gate.most_running = max(gate.most_running, gate.running)
        try:
            await gate.open.wait()
        finally:
            gate.running -= 1

    return held


def job_rows(db_url: str, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    rows = query(
        db_url,
        "SELECT id, status, worker_id IS NOT NULL, attempt_id IS NOT NULL, started_at IS NOT "
        "NULL, attempts FROM tracedjobs_jobs WHERE id = ANY(%s)",
        (ids,),
    )
    return {row[0]: row[1:] for row in rows}


def attempt_count(db_url: str, job_id: int) -> int:
    return query(db_url, "SELECT count(*) FROM tracedjobs_attempts WHERE job_id = %s", (job_id,))[
        0
    ][0]


async def until(predicate: Any, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.02)


def test_prefetched_jobs_wait_as_doing_and_start_as_slots_free(
    app: tracedjobs.App, db_url: str
) -> None:
    gate = Gate()
    held = held_task(app, gate)

    async def main() -> None:
        ids = [await held.defer_async(n=n) for n in range(5)]

        async def claimed() -> bool:
            rows = job_rows(db_url, ids)
            return sum(r[0] == "doing" for r in rows.values()) == 3

        async with running_worker(app, concurrency=1, prefetch=2):
            await until(claimed)
            await anyio.sleep(0.2)  # time for a wrong start to show
            rows = job_rows(db_url, ids)
            # One running, two prefetched (claimed, `doing`, not started), two left todo.
            assert [rows[i][0] for i in ids] == ["doing", "doing", "doing", "todo", "todo"]
            assert gate.started == [0]
            gate.open.set()
            for job_id in ids:
                await wait_for_status(app, job_id)
        await app.connector.close_async()
        assert gate.started == [0, 1, 2, 3, 4]  # claim order: priority, then id
        assert gate.most_running == 1  # concurrency holds: prefetched jobs only wait
        for job_id in ids:
            job = await app.job_manager.get_job_async(job_id)
            assert job.status == "succeeded" and job.attempts == 1
            assert attempt_count(db_url, job_id) == 1

    anyio.run(main)


def test_stopping_hands_prefetched_jobs_back_unstarted(app: tracedjobs.App, db_url: str) -> None:
    gate = Gate()
    held = held_task(app, gate)

    async def main() -> None:
        ids = [await held.defer_async(n=n) for n in range(4)]
        worker = Worker(app, **{**FAST, "concurrency": 1, "prefetch": 3})

        async def all_claimed() -> bool:
            return all(r[0] == "doing" for r in job_rows(db_url, ids).values())

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await until(all_claimed)
            worker.stop()

            async def handed_back() -> bool:
                return all(r[0] == "todo" for r in job_rows(db_url, ids[1:]).values())

            # At once, while the running job goes on (it finishes before the worker stops).
            await until(handed_back, timeout=10)
            assert gate.started == [0]
            gate.open.set()
        rows = job_rows(db_url, ids)
        assert rows[ids[0]][0] == "succeeded" and rows[ids[0]][4] == 1
        for job_id in ids[1:]:
            # Not a lost attempt: no worker, no attempt, no start, nothing counted.
            assert rows[job_id] == ("todo", False, False, False, 0)
            assert attempt_count(db_url, job_id) == 0

        gate.started.clear()
        async with running_worker(app, concurrency=2):
            for job_id in ids[1:]:
                job = await wait_for_status(app, job_id)
                assert job.status == "succeeded" and job.attempts == 1
        await app.connector.close_async()
        assert sorted(gate.started) == [1, 2, 3]

    anyio.run(main)


class ReleaseFailsOnce(StoreWrapper):
    """The worker's store, whose first hand-back fails as if the database went away."""

    def __init__(self, inner: PostgresStore) -> None:
        super().__init__(inner)
        self.release_calls = 0

    async def release_jobs(self, jobs: Any, *, worker_id: str) -> set[int]:
        self.release_calls += 1
        if self.release_calls == 1:
            raise psycopg.OperationalError("connection lost (test)")
        released: set[int] = await self.inner.release_jobs(jobs, worker_id=worker_id)
        return released


def test_a_failed_hand_back_is_tried_again(app: tracedjobs.App, db_url: str) -> None:
    """Stopping while the database fails: the prefetched jobs stay with the worker, which
    backs off and hands them back once it can (never left `doing` by a worker that left)."""
    gate = Gate()
    held = held_task(app, gate)

    async def main() -> None:
        ids = [await held.defer_async(n=n) for n in range(3)]
        store = ReleaseFailsOnce(PostgresStore(app.connector, name="t-release"))
        worker = Worker(app, store=store, **{**FAST, "concurrency": 1, "prefetch": 2})

        async def all_claimed() -> bool:
            return all(r[0] == "doing" for r in job_rows(db_url, ids).values())

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            try:
                await until(all_claimed)
                worker.stop()
            finally:
                gate.open.set()
        await app.connector.close_async()
        assert store.release_calls == 2
        assert gate.started == [0]
        rows = job_rows(db_url, ids)
        assert rows[ids[0]][0] == "succeeded"
        for job_id in ids[1:]:
            assert rows[job_id] == ("todo", False, False, False, 0)

    anyio.run(main)


def test_aborting_a_prefetched_job_ends_it_without_running_it(
    app: tracedjobs.App, db_url: str
) -> None:
    gate = Gate()
    held = held_task(app, gate)

    async def main() -> None:
        ids = [await held.defer_async(n=n) for n in range(3)]

        async def claimed() -> bool:
            return all(r[0] == "doing" for r in job_rows(db_url, ids).values())

        async with running_worker(app, concurrency=1, prefetch=2):
            await until(claimed)
            assert await app.job_manager.cancel_job_by_id_async(ids[1], abort=True)
            try:
                # Ended while job 0 still holds the only slot: it did not wait for a slot.
                job = await wait_for_status(app, ids[1], timeout=10)
                assert gate.started == [0]
            finally:
                gate.open.set()  # a failure above must not leave the worker's stop waiting
            await wait_for_status(app, ids[2])
        await app.connector.close_async()
        assert job.status == "aborted"
        assert gate.started == [0, 2]
        outcomes = query(
            db_url,
            "SELECT outcome, error_type FROM tracedjobs_attempts WHERE job_id = %s",
            (ids[1],),
        )
        assert outcomes == [("aborted", "tracedjobs.exceptions.JobAborted")]

    anyio.run(main)


def test_prefetched_retries_and_locked_jobs_never_overlap(app: tracedjobs.App) -> None:
    """A prefetched job is claimed like any other (a lock's next job only once the holder
    ended, a retry only once its attempt was recorded) and starts after the attempt before
    it ended: spans of one job's attempts, and of one lock's jobs, never overlap."""
    otel = installed_otel()
    otel.spans.clear()

    @app.task(queue="pf", retry=2, pass_context=True)
    async def flaky(context: tracedjobs.JobContext) -> None:
        await anyio.sleep(0.002)
        if context.job.attempt_number < 3:
            raise RuntimeError("fails twice")

    @app.task(queue="pf")
    async def locked(n: int) -> None:
        await anyio.sleep(0.002)

    @app.task(queue="pf")
    async def plain(n: int) -> None:
        await anyio.sleep(0.001)

    retried = [flaky.defer() for _ in range(3)]
    by_lock = {
        lock: [locked.configure(lock=lock).defer(n=n) for n in range(6)] for lock in ("a", "b")
    }
    plain.batch_defer(*({"n": n} for n in range(60)))

    async def main() -> None:
        worker = Worker(app, **{**FAST, "concurrency": 3, "prefetch": 6, "wait": False})
        try:
            await worker.run()
        finally:
            await app.connector.close_async()

    anyio.run(main)
    spans: dict[str, list[Any]] = {}
    for s in otel.finished("process pf"):
        spans.setdefault(str(s.attributes["messaging.message.id"]), []).append(s)
    for job_id in retried:
        attempts = sorted(spans[str(job_id)], key=lambda s: s.start_time)
        assert [s.attributes["tracedjobs.job.outcome"] for s in attempts] == [
            "retried",
            "retried",
            "succeeded",
        ]
        assert all(a.end_time <= b.start_time for a, b in pairwise(attempts))
    for ids in by_lock.values():
        chain = sorted((s for i in ids for s in spans[str(i)]), key=lambda s: s.start_time)
        assert [int(s.attributes["messaging.message.id"]) for s in chain] == ids
        assert all(a.end_time <= b.start_time for a, b in pairwise(chain))
    assert len(otel.finished("process pf")) == 3 * 3 + 12 + 60


def test_prefetch_is_a_whole_number(app: tracedjobs.App) -> None:
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="prefetch must be a whole number"):
            Worker(app, prefetch=bad)


def test_a_prefetched_jobs_queue_wait_counts_its_wait_in_the_worker(app: tracedjobs.App) -> None:
    """Queue wait ends when the job starts, not when it was claimed: a job prefetched
    behind a 0.3 s job waited at least that long (its queue, `pfw`, is this test's own)."""
    otel = installed_otel()

    @app.task(queue="pfw")
    async def slow(n: int) -> None:
        await anyio.sleep(0.3 if n == 0 else 0)

    slow.defer(n=0), slow.defer(n=1)

    async def main() -> None:
        worker = Worker(app, **{**FAST, "concurrency": 1, "prefetch": 1, "wait": False})
        try:
            await worker.run()
        finally:
            await app.connector.close_async()

    anyio.run(main)
    (point,) = [
        p
        for _, p in otel.points("tracedjobs.job.queue_wait")
        if p.attributes.get("messaging.destination.name") == "pfw"
    ]
    assert point.count == 2
    assert point.max >= 0.29 > point.min
