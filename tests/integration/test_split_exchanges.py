"""A busy worker with a high concurrency runs two exchanges (hand in results, claim jobs) at
once, each claiming half its slots: every job still runs once, locks and priorities hold,
every result is recorded; a worker with a lower concurrency or no backlog keeps to one."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

import tracedjobs
from tests.conftest import installed_otel
from tests.helpers import scalar
from tests.integration.running import FAST, StoreWrapper
from tracedjobs.jobs import AttemptResult
from tracedjobs.store import Batch, PostgresStore, WorkerInfo
from tracedjobs.worker import Worker


class CountingStore(StoreWrapper):
    """A real PostgresStore that records how many exchanges ran at once and their claims."""

    def __init__(self, inner: PostgresStore) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.most_in_flight = 0
        self.limits: list[int] = []
        self.exchanges: list[tuple[int, int, int]] = []  # (results, limit, claimed)
        self.limits_beside_another: list[int] = []  # claims made while another was in flight
        self.claiming = 0  # slots asked for by the exchanges in flight
        self.most_claiming = 0
        self.listening = False

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Any]:
        async with self.inner.listen() as notifications:
            self.listening = True
            yield notifications

    async def finish_and_claim(
        self, finished: Sequence[AttemptResult], *, worker: WorkerInfo, limit: int,
        delete_statuses: Sequence[str] = (),
    ) -> Batch:  # fmt: skip
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.limits.append(limit)
        if self.in_flight > 1:
            self.limits_beside_another.append(limit)
        self.claiming += limit
        self.most_claiming = max(self.most_claiming, self.claiming)
        try:
            batch = await self.inner.finish_and_claim(
                finished, worker=worker, limit=limit, delete_statuses=delete_statuses
            )
            self.exchanges.append((len(finished), limit, len(batch.claimed)))
            return batch
        finally:
            self.in_flight -= 1
            self.claiming -= limit


def drain(app: tracedjobs.App, concurrency: int) -> CountingStore:
    async def main() -> CountingStore:
        store = CountingStore(PostgresStore(app.connector, name=f"t-{uuid.uuid4().hex[:6]}"))
        worker = Worker(app, store=store, **{**FAST, "concurrency": concurrency, "wait": False})
        try:
            await worker.run()
        finally:
            await app.connector.close_async()
        return store

    return anyio.run(main)


async def settled(store: CountingStore, worker: Worker) -> None:
    """Until the worker listens (LISTEN's set-up pokes once more, for jobs deferred before
    it) and is idle with no exchange in flight: every exchange after that is one a job
    caused."""
    with anyio.fail_after(30):
        while not (store.listening and worker._idle and not worker._exchanges):
            await anyio.sleep(0.01)


def test_a_backlog_is_drained_by_two_exchanges_at_once_and_every_guarantee_holds(
    app: tracedjobs.App, db_url: str
) -> None:
    runs: dict[int, int] = {}
    holders: dict[str, int] = {}  # lock -> jobs holding it right now
    overlaps: list[str] = []
    guard = threading.Lock()

    @app.task(pass_context=True)
    async def work(context: tracedjobs.JobContext, n: int, fail: bool = False) -> None:
        job = context.job
        with guard:
            runs[n] = runs.get(n, 0) + 1
            if job.lock:
                holders[job.lock] = holders.get(job.lock, 0) + 1
                if holders[job.lock] > 1:
                    overlaps.append(job.lock)
        await anyio.sleep(0.002 if job.lock else 0)
        with guard:
            if job.lock:
                holders[job.lock] -= 1
        if fail:
            raise ValueError(f"job {n} fails")

    plain = work.batch_defer(*({"n": n, "fail": n % 50 == 0} for n in range(1200)))
    locked = [work.configure(lock=f"lock-{n % 5}").defer(n=2000 + n) for n in range(40)]
    urgent = work.configure(priority=10).defer(n=5000)
    started = time.monotonic()
    store = drain(app, concurrency=100)
    assert time.monotonic() - started < 120

    assert store.most_in_flight == 2
    # The first claim fills every slot; two exchanges at once claim at most half each, and
    # the claims in flight together never ask for more slots than the worker has.
    assert store.limits[0] == 100
    assert store.limits_beside_another and max(store.limits_beside_another) <= 50
    assert store.most_claiming == 100
    assert runs == {n: 1 for n in [*range(1200), *range(2000, 2040), 5000]}
    assert overlaps == []
    rows = dict(
        (s, n) for s, n in scalar(
            db_url, "SELECT array_agg(ARRAY[status, n::text]) FROM (SELECT status, count(*) AS n "
            "FROM tracedjobs_jobs GROUP BY status) s"
        )
    )  # fmt: skip
    assert rows == {"succeeded": str(1241 - 24), "failed": "24"}
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_attempts") == 1241
    # The urgent job was claimed by the first exchange, before the rest of the backlog.
    first = scalar(db_url, "SELECT min(attempt_id) FROM tracedjobs_jobs")
    assert scalar(db_url, "SELECT attempt_id FROM tracedjobs_jobs WHERE id = %s", (urgent,)) == first
    assert len(plain) == 1200 and len(locked) == 40


def test_a_lower_concurrency_keeps_one_exchange_at_a_time(app: tracedjobs.App) -> None:
    @app.task
    async def noop(n: int) -> None:
        pass

    noop.batch_defer(*({"n": n} for n in range(300)))
    store = drain(app, concurrency=10)
    assert store.most_in_flight == 1
    assert max(store.limits) == 10
    assert app.job_manager.list_jobs(status="succeeded").__len__() == 300


def test_jobs_arriving_one_by_one_cost_one_claim_and_one_result_exchange_each(
    app: tracedjobs.App,
) -> None:
    """A job announced while the worker is idle is claimed by one exchange, which also tells
    that no other job is ready; its result is handed in by a second, which claims nothing
    (a notification will announce the next job). No empty claim follows: it would be a
    wasted round trip per job, and a job announced meanwhile would wait behind it."""

    @app.task
    async def noop(n: int) -> None:
        pass

    async def main() -> CountingStore:
        store = CountingStore(PostgresStore(app.connector, name=f"t-{uuid.uuid4().hex[:6]}"))
        # Polling far apart: every exchange below is one the jobs caused.
        worker = Worker(app, store=store, **{**FAST, "polling_interval": 60.0})
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await settled(store, worker)
            before = len(store.exchanges)
            for n in range(5):
                job_id = await noop.defer_async(n=n)
                with anyio.fail_after(30):
                    while await app.job_manager.get_job_status_async(job_id) != "succeeded":
                        await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # time for any exchange the job's end would start
            store.exchanges = store.exchanges[before:]
            worker.stop()
        await app.connector.close_async()
        return store

    store = anyio.run(main)
    assert store.exchanges == [(0, 1, 1), (1, 0, 0)] * 5


def test_an_attempt_claimed_with_a_result_starts_after_that_attempt_ended(
    app: tracedjobs.App,
) -> None:
    """When one exchange hands in a result and claims the job it made ready (the job's own
    retry, or the next job under its lock), the finished attempt ends first: its span and
    log line come before the new attempt starts, so traces and logs never show a job's two
    attempts, or two jobs under one lock, running at once."""
    otel = installed_otel()
    otel.spans.clear()
    started: dict[tuple[str, int], int] = {}

    @app.task(queue="order", retry=1, pass_context=True)
    async def flaky(context: tracedjobs.JobContext) -> None:
        started["flaky", context.job.attempt_number] = time.time_ns()
        if context.job.attempt_number == 1:
            raise RuntimeError("first attempt fails")

    @app.task(queue="order", lock="one-at-a-time")
    async def locked(n: int) -> None:
        started["locked", n] = time.time_ns()

    retried = flaky.defer()
    store = drain(app, concurrency=1)
    assert store.exchanges[:2] == [(0, 1, 1), (1, 1, 1)]  # the retry came with the result
    first_lock, second_lock = locked.defer(n=1), locked.defer(n=2)
    store = drain(app, concurrency=2)
    assert (1, 2, 1) in store.exchanges  # job 2 was claimed with job 1's result

    spans: dict[str, list[Any]] = {}
    for s in otel.finished("process order"):
        spans.setdefault(str(s.attributes["messaging.message.id"]), []).append(s)
    one, two = sorted(spans[str(retried)], key=lambda s: s.start_time)
    assert one.end_time <= two.start_time <= started["flaky", 2]
    (a,), (b,) = spans[str(first_lock)], spans[str(second_lock)]
    assert a.end_time <= b.start_time <= started["locked", 2]


class HeldResults(StoreWrapper):
    """A PostgresStore whose exchanges that only hand in results wait for ``release``."""

    def __init__(self, inner: PostgresStore) -> None:
        super().__init__(inner)
        self.holding = anyio.Event()
        self.release = anyio.Event()

    async def finish_and_claim(
        self, finished: Sequence[AttemptResult], *, worker: WorkerInfo, limit: int,
        delete_statuses: Sequence[str] = (),
    ) -> Batch:  # fmt: skip
        if finished and limit == 0:
            self.holding.set()
            await self.release.wait()
        return await self.inner.finish_and_claim(
            finished, worker=worker, limit=limit, delete_statuses=delete_statuses
        )


def test_a_job_announced_while_a_result_is_written_starts_beside_it(app: tracedjobs.App) -> None:
    """With no job ready, a result is handed in by an exchange that claims nothing, and the
    free slot is not promised to it: a job announced meanwhile is claimed by a second
    exchange at once instead of waiting for the first (concurrency 1 still runs one job at
    a time)."""
    started: dict[int, float] = {}
    ended: dict[int, float] = {}

    @app.task
    async def step(n: int) -> None:
        started[n] = time.monotonic()
        ended[n] = time.monotonic()

    async def main() -> tuple[CountingStore, float]:
        held = HeldResults(PostgresStore(app.connector, name=f"t-{uuid.uuid4().hex[:6]}"))
        store = CountingStore(held)  # type: ignore[arg-type]
        worker = Worker(app, store=store, **{**FAST, "polling_interval": 60.0})
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await settled(store, worker)
            await step.defer_async(n=1)
            with anyio.fail_after(30):
                await held.holding.wait()  # job 1 ended; its result is being handed in
            held_at = time.monotonic()
            second = await step.defer_async(n=2)
            with anyio.move_on_after(10):
                while 2 not in started:
                    await anyio.sleep(0.01)
            held.release.set()
            with anyio.fail_after(30):
                while await app.job_manager.get_job_status_async(second) != "succeeded":
                    await anyio.sleep(0.01)
            worker.stop()
        await app.connector.close_async()
        return store, held_at

    store, held_at = anyio.run(main)
    assert 2 in started, "job 2 waited for job 1's result to be written"
    assert ended[1] <= held_at < started[2]
    assert store.limits_beside_another == [1]  # the claim that started job 2
    assert [e for e in store.exchanges if e[0]] == [(1, 0, 0), (1, 0, 0)]
    statuses = app.job_manager.list_jobs()
    assert sorted(j.status for j in statuses) == ["succeeded", "succeeded"]


def test_a_one_shot_worker_runs_retries_and_lock_waiters_that_results_make_ready(
    app: tracedjobs.App, db_url: str
) -> None:
    """Results can make jobs ready (a retry due at once, a job that waited on the released
    lock): a one-shot worker, whose every exchange claims, runs them before it exits."""
    runs: list[tuple[int, int]] = []

    @app.task(pass_context=True, retry=tracedjobs.RetryStrategy(max_attempts=2))
    async def flaky(context: tracedjobs.JobContext, n: int) -> None:
        runs.append((n, context.job.attempts))
        if n == 1 and context.job.attempts == 0:
            raise ValueError("first attempt fails")

    flaky.configure(lock="k").defer(n=1)
    flaky.configure(lock="k").defer(n=2)
    store = drain(app, concurrency=2)
    assert runs == [(1, 0), (1, 1), (2, 0)]
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'succeeded'") == 2
    assert store.limits[0] == 2


class DeafToJobs(CountingStore):
    """LISTEN as usual, but the new-job notifications never reach the worker: whatever it
    claims after its first claim, it claims because it knew to, or when it polls."""

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Any]:
        async def aborts_only(notifications: Any) -> AsyncIterator[Any]:
            async for notify in notifications:
                if notify.channel != "tracedjobs_jobs":
                    yield notify

        async with self.inner.listen() as notifications:
            self.listening = True
            yield aborts_only(notifications)


def test_a_waiting_worker_claims_at_once_what_its_own_results_make_ready(
    app: tracedjobs.App,
) -> None:
    """Idle, a waiting worker hands results in without a claim; one that makes a job ready
    (a retry due now, a job that waited on the lock it released) is followed by a claim at
    once, not by the next poll (60 s here) nor only by the notification (dropped here)."""
    runs: list[tuple[int, int, float]] = []

    @app.task(pass_context=True, retry=tracedjobs.RetryStrategy(max_attempts=2))
    async def flaky(context: tracedjobs.JobContext, n: int) -> None:
        runs.append((n, context.job.attempts, time.monotonic()))
        if n == 1 and context.job.attempts == 0:
            raise ValueError("first attempt fails")

    async def main() -> DeafToJobs:
        store = DeafToJobs(PostgresStore(app.connector, name=f"t-{uuid.uuid4().hex[:6]}"))
        worker = Worker(app, store=store, **{**FAST, "concurrency": 2, "polling_interval": 60.0})
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await settled(store, worker)
            store.exchanges = []
            await flaky.configure(lock="k").defer_async(n=1)
            await flaky.configure(lock="k").defer_async(n=2)
            worker._poke()  # what the (dropped) notification would have done
            with anyio.move_on_after(10):
                while len(runs) < 3 or worker._exchanges:
                    await anyio.sleep(0.01)
            worker.stop()
        await app.connector.close_async()
        return store

    store = anyio.run(main)
    assert [(n, attempts) for n, attempts, _ in runs] == [(1, 0), (1, 1), (2, 0)]
    assert runs[-1][2] - runs[0][2] < 5  # not a 60 s poll
    # The first claim took job 1 alone (2 waited on its lock): fewer than asked, so idle.
    # Each result was handed in alone and followed by a claim of its own (job 2's, which
    # released the lock too, by an empty one unless the worker was stopping by then).
    assert store.exchanges[:6] == [(0, 2, 1), (1, 0, 0)] * 3
    assert store.exchanges[6:] in ([], [(0, 2, 0)])
