"""The worker's fetch semantics: priority, locks, schedules, unknown tasks, LISTEN/NOTIFY."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time

import anyio
import pytest

import tracedjobs
from tests.helpers import query
from tests.integration.running import FAST, StoreWrapper
from tracedjobs.store import PostgresStore
from tracedjobs.worker import Worker


def run_until_idle(app: tracedjobs.App, **options: object) -> None:
    app.run_worker(wait=False, install_signal_handlers=False, **options)


def test_sync_and_async_tasks_both_run(app: tracedjobs.App) -> None:
    seen: list[tuple[str, str]] = []

    @app.task
    def sync_task(x: str) -> None:
        seen.append(("sync", threading.current_thread().name))

    @app.task
    async def async_task(x: str) -> None:
        seen.append(("async", threading.current_thread().name))

    sync_task.defer(x="a")
    async_task.defer(x="b")
    run_until_idle(app)
    kinds = dict(seen)
    assert set(kinds) == {"sync", "async"}
    # Sync tasks run in a worker thread, async ones on the event loop (main thread here).
    assert kinds["async"] == "MainThread" and kinds["sync"] != "MainThread"


def test_jobs_run_by_priority_then_defer_order(app: tracedjobs.App) -> None:
    order: list[int] = []

    @app.task
    def job(n: int) -> None:
        order.append(n)

    job.configure(priority=0).defer(n=1)
    job.configure(priority=10).defer(n=2)
    job.configure(priority=0).defer(n=3)
    job.configure(priority=10).defer(n=4)
    job.configure(priority=-5).defer(n=5)
    run_until_idle(app, concurrency=1)
    assert order == [2, 4, 1, 3, 5]


def test_jobs_sharing_a_lock_never_overlap_and_run_in_defer_order(app: tracedjobs.App) -> None:
    intervals: list[tuple[int, float, float]] = []

    @app.task
    async def locked(n: int) -> None:
        start = time.monotonic()
        await anyio.sleep(0.05)
        intervals.append((n, start, time.monotonic()))

    for n in range(6):
        locked.configure(lock="account-1").defer(n=n)
    for n in range(6, 9):
        locked.defer(n=n)  # no lock: free to run alongside
    run_until_idle(app, concurrency=5)
    in_lock = sorted((s, e, n) for n, s, e in intervals if n < 6)
    assert [n for _s, _e, n in in_lock] == [0, 1, 2, 3, 4, 5]
    for (_s1, end1, _n1), (start2, _e2, _n2) in itertools.pairwise(in_lock):
        assert end1 <= start2
    # The unlocked jobs did overlap with the locked ones (concurrency was used).
    free_starts = [s for n, s, _e in intervals if n >= 6]
    assert min(free_starts) < in_lock[0][1]


def test_scheduled_job_does_not_start_before_its_time(app: tracedjobs.App) -> None:
    started: list[float] = []

    @app.task
    def later() -> None:
        started.append(time.time())

    deferred_at = time.time()
    job_id = later.configure(schedule_in={"seconds": 1.0}).defer()

    async def main() -> None:
        worker = Worker(app, install_signal_handlers=False, polling_interval=30)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(20):
                while not started:
                    await anyio.sleep(0.02)
            worker.stop()

    anyio.run(main)
    job = app.job_manager.get_job(job_id)
    assert job.scheduled_at is not None
    assert started[0] >= job.scheduled_at.timestamp()
    # Woken by its schedule, not by the 30 s poll.
    assert started[0] - deferred_at < 10


def test_new_job_wakes_an_idle_worker_through_notify(app: tracedjobs.App) -> None:
    started: list[float] = []

    @app.task
    def ping() -> None:
        started.append(time.monotonic())

    async def main() -> float:
        worker = Worker(app, install_signal_handlers=False, polling_interval=60)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(1.0)  # idle, listening, next poll 60 s away
            deferred = time.monotonic()
            await ping.defer_async()
            with anyio.fail_after(20):
                while not started:
                    await anyio.sleep(0.01)
            worker.stop()
        await app.connector.close_async()
        return started[0] - deferred

    latency = anyio.run(main)
    assert latency < 10  # far below the 60 s poll: the notification woke it


def test_unknown_task_fails_that_job_and_the_worker_goes_on(
    app: tracedjobs.App, db_url: str
) -> None:
    ran: list[int] = []

    @app.task
    def known(n: int) -> None:
        ran.append(n)

    query(
        db_url,
        "INSERT INTO tracedjobs_jobs (queue_name, task_name, args) VALUES ('default', 'gone.task', '{}')",
    )
    known.defer(n=1)
    run_until_idle(app)
    assert ran == [1]
    [ghost] = app.job_manager.list_jobs(task_name="gone.task")
    ghost = app.job_manager.get_job(ghost.id)
    assert ghost.status == "failed"
    [attempt] = ghost.attempt_records
    assert attempt.error_type == "tracedjobs.exceptions.TaskNotFound"
    assert "gone.task" in (attempt.error_message or "")


def test_malformed_args_fail_the_job_not_the_worker(app: tracedjobs.App, db_url: str) -> None:
    @app.task(name="needs_x")
    def needs_x(x: int) -> None: ...

    query(
        db_url,
        "INSERT INTO tracedjobs_jobs (queue_name, task_name, args) VALUES "
        "('default', 'needs_x', '[1, 2]'), ('default', 'needs_x', '{\"y\": 1}')",
    )
    run_until_idle(app)
    jobs = [app.job_manager.get_job(j.id) for j in app.job_manager.list_jobs()]
    assert [j.status for j in jobs] == ["failed", "failed"]
    assert all(j.attempt_records[0].error_type == "TypeError" for j in jobs)


def test_worker_only_takes_jobs_of_its_queues(app: tracedjobs.App) -> None:
    ran: list[str] = []

    @app.task
    def job(q: str) -> None:
        ran.append(q)

    job.configure(queue="a").defer(q="a")
    job.configure(queue="b").defer(q="b")
    run_until_idle(app, queues=["a"])
    assert ran == ["a"]
    assert [j.queue_name for j in app.job_manager.list_jobs(status="todo")] == ["b"]


def test_attempt_record_holds_worker_queue_wait_and_duration(app: tracedjobs.App) -> None:
    @app.task
    async def slow() -> None:
        await anyio.sleep(0.1)

    job_id = slow.defer()
    run_until_idle(app, name="w-test")
    [attempt] = app.job_manager.get_job(job_id).attempt_records
    assert attempt.worker_name == "w-test" and attempt.worker_id
    assert attempt.outcome == "succeeded" and attempt.attempt == 1
    assert attempt.duration is not None and 0.09 < attempt.duration < 5
    assert attempt.queue_wait is not None and attempt.queue_wait >= 0
    assert attempt.finished_at is not None and attempt.finished_at > attempt.started_at


@pytest.mark.parametrize("concurrency", [1, 7])
def test_every_job_runs_exactly_once_in_process(app: tracedjobs.App, concurrency: int) -> None:
    counts: dict[int, int] = {}

    @app.task
    async def count(n: int) -> None:
        counts[n] = counts.get(n, 0) + 1

    count.batch_defer(*({"n": i} for i in range(300)))
    run_until_idle(app, concurrency=concurrency)
    assert counts == {i: 1 for i in range(300)}
    assert app.job_manager.list_jobs(status="todo") == []


def test_an_error_message_with_a_nul_byte_is_stored_and_the_worker_goes_on(
    app: tracedjobs.App,
) -> None:
    @app.task
    def binary_error() -> None:
        raise ValueError("bad bytes: \x00\x01")

    @app.task
    def after() -> None: ...

    failing = binary_error.defer()
    ok = after.defer()
    run_until_idle(app)
    [attempt] = app.job_manager.get_job(failing).attempt_records
    assert attempt.error_message == "bad bytes: \\x00\x01"
    assert app.job_manager.get_job_status(ok) == "succeeded"


class _OpenWaits(StoreWrapper):
    """A store whose open() waits until told: the worker is starting, not yet registered."""

    def __init__(self, inner: PostgresStore) -> None:
        super().__init__(inner)
        self.opening = anyio.Event()
        self.go = anyio.Event()

    async def open(self) -> None:
        self.opening.set()
        await self.go.wait()
        await self.inner.open()


def test_a_signal_while_the_worker_starts_stops_it_once_started(
    app: tracedjobs.App, db_url: str
) -> None:
    """SIGINT (as SIGTERM) before the worker registered: its own handler takes it (not the
    process's default, which kills a worker whose row is left behind), and the worker stops
    without claiming anything and unregisters."""
    hit: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))

    @app.task(name="waiting")
    def waiting() -> None:
        pass

    async def main() -> Worker:
        nonlocal job_id
        job_id = await waiting.defer_async()
        store = _OpenWaits(PostgresStore(app.connector, name="t-signal"))
        worker = Worker(app, store=store, **{**FAST, "install_signal_handlers": True})
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await store.opening.wait()
                os.kill(os.getpid(), signal.SIGINT)
                await anyio.sleep(0.1)
                store.go.set()
        await app.connector.close_async()
        return worker

    job_id = 0
    try:
        worker = anyio.run(main)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert hit == []  # the worker's handler had it
    assert worker._signals_seen == 1 and worker._stopping
    assert query(db_url, "SELECT id FROM tracedjobs_workers WHERE id = %s", (worker.id,)) == []
    assert query(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job_id,)) == [
        ("todo",)
    ]
