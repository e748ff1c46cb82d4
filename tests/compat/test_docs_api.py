"""Procrastinate's documented Python API, call by call, against tracedjobs.

Each test follows one of its how-to guides (named in the docstring) as a user would write
it, with ``import tracedjobs as procrastinate``. Real PostgreSQL; jobs run by the real
worker (``app.run_worker(wait=False)`` runs the same Worker as ``tracedjobs worker``).
The worker-core parts (connector, worker options, job manager, semantics) are in
test_docs_worker_core.py.
"""

from __future__ import annotations

import datetime
import functools
import random
import time
from typing import Any

import anyio
import psycopg
import pytest

import tracedjobs as procrastinate
from tests.compat.conftest import run, status
from tracedjobs import exceptions, utils


def test_tasks_sync_async_with_and_without_parentheses(app: procrastinate.App) -> None:
    """howto/basics/tasks, howto/basics/defer ("The direct way")."""
    ran: list[Any] = []

    @app.task
    def mytask(argument: int, other_argument: int) -> None:
        ran.append(("sync", argument, other_argument))

    @app.task(queue="some_queue")
    async def my_async_task(a: int, b: int) -> None:
        ran.append(("async", a, b))

    ids = [mytask.defer(argument=1, other_argument=2)]

    async def defer_async() -> None:
        ids.append(await my_async_task.defer_async(a=1, b=2))

    anyio.run(defer_async)
    run(app)
    assert sorted(ran) == [("async", 1, 2), ("sync", 1, 2)]
    assert [status(app, i) for i in ids] == ["succeeded", "succeeded"]
    assert (
        mytask.name
        == f"{__name__}.test_tasks_sync_async_with_and_without_parentheses.<locals>.mytask"
    )


def test_configure_lock_schedule_queue_and_job_pattern(app: procrastinate.App) -> None:
    """howto/basics/defer ("With parameters", "Create a job pattern")."""

    @app.task(queue="some_queue")
    def my_task(a: int, b: int) -> None: ...

    later = my_task.configure(
        lock="the name of my lock", schedule_in={"hours": 1}, queue="not_the_default_queue"
    ).defer(a=1, b=2)
    job = app.job_manager.get_job(later)
    assert (job.lock, job.queue) == ("the name of my lock", "not_the_default_queue")
    assert job.scheduled_at is not None
    assert job.scheduled_at > utils.utcnow() + datetime.timedelta(minutes=59)

    pattern = my_task.configure(task_kwargs={"a": 1})
    ids = [pattern.defer(b=2), pattern.defer(b=3)]

    async def more() -> None:
        ids.append(await pattern.defer_async(b=4))

    anyio.run(more)
    assert [app.job_manager.get_job(i).task_kwargs for i in ids] == [
        {"a": 1, "b": 2},
        {"a": 1, "b": 3},
        {"a": 1, "b": 4},
    ]


def test_configure_task_by_name(app: procrastinate.App) -> None:
    """howto/basics/defer ("Defer a job if you can't access the task"), known task."""

    @app.task(name="my_module.my_task")
    def my_task(a: int, b: int) -> None: ...

    job_id = app.configure_task(name="my_module.my_task", queue="some_queue").defer(a=1, b=2)

    async def defer_async() -> int:
        return await app.configure_task(name="my_module.my_task", queue="some_queue").defer_async(
            a=1, b=2
        )

    other = anyio.run(defer_async)
    for i in (job_id, other):
        job = app.job_manager.get_job(i)
        assert (job.task_name, job.queue, job.task_kwargs) == (
            "my_module.my_task",
            "some_queue",
            {"a": 1, "b": 2},
        )


def test_configure_task_of_a_task_this_app_does_not_know(app: procrastinate.App) -> None:
    """howto/basics/defer ("Defer a job if you can't access the task"): the task lives in
    another code base."""
    job_id = app.configure_task(name="my_module.my_task", queue="some_queue").defer(a=1, b=2)
    job = app.job_manager.get_job(job_id)
    assert (job.task_name, job.queue, job.task_kwargs) == (
        "my_module.my_task",
        "some_queue",
        {"a": 1, "b": 2},
    )


def test_batch_defer_direct_and_configured(app: procrastinate.App) -> None:
    """howto/basics/batch_defer."""

    @app.task(queue="some_queue")
    def my_task(a: int, b: int) -> None: ...

    ids = my_task.batch_defer({"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "b": 6})

    async def batch() -> list[int]:
        return await my_task.configure(
            lock="the name of my lock", schedule_in={"hours": 1}, queue="not_the_default_queue"
        ).batch_defer_async({"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "b": 6})

    ids += anyio.run(batch)
    jobs = [app.job_manager.get_job(i) for i in ids]
    assert [j.queue for j in jobs] == ["some_queue"] * 3 + ["not_the_default_queue"] * 3
    with pytest.raises(procrastinate.exceptions.AlreadyEnqueued):
        my_task.configure(queueing_lock="same").batch_defer({"a": 1, "b": 1}, {"a": 2, "b": 2})
    assert len(app.job_manager.list_jobs()) == 6  # none of that batch was deferred


def test_worker_queues_name_and_concurrency(app: procrastinate.App) -> None:
    """howto/basics/worker, howto/production/concurrency."""
    seen: list[tuple[str, str]] = []

    @app.task(queue="q1", pass_context=True)
    async def one(context: procrastinate.JobContext) -> None:
        seen.append((context.worker_name, context.job.queue))

    @app.task(queue="q2", pass_context=True)
    async def two(context: procrastinate.JobContext) -> None:
        seen.append((context.worker_name, context.job.queue))

    one.defer()
    waiting = two.defer()
    run(app, queues=["q1"], name="worker-name", concurrency=30)
    assert seen == [("worker-name", "q1")]
    assert status(app, waiting) == "todo"

    async def async_worker() -> None:
        async with app.open_async():
            await app.run_worker_async(queues=["q2"], name="other", wait=False)

    anyio.run(async_worker)
    assert seen[-1] == ("other", "q2")


def test_listen_notify_off_and_worker_defaults(db_url: str) -> None:
    """howto/production/connections: App(worker_defaults=...), run_worker(listen_notify=False)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=db_url),
        worker_defaults={"listen_notify": False, "install_signal_handlers": False},
    )
    try:

        @app.task
        def t() -> None: ...

        ids = [t.defer(), t.defer()]
        app.run_worker(wait=False)
        app.run_worker(wait=False, listen_notify=False)
        assert {status(app, i) for i in ids} == {"succeeded"}
    finally:
        app.close()


def test_job_context_module_names_as_in_procrastinate() -> None:
    """``from procrastinate.job_context import AbortReason, JobContext``, renamed."""
    from tracedjobs.job_context import AbortReason, JobContext

    assert JobContext is procrastinate.JobContext
    assert AbortReason is procrastinate.AbortReason
    assert AbortReason.USER_REQUEST.value == "user_request"
    assert AbortReason.SHUTDOWN.value == "shutdown"


def test_context_job_task_and_retry_introspection(app: procrastinate.App) -> None:
    """howto/advanced/context, howto/advanced/retry ("Knowing whether a job is on its last
    attempt")."""
    last: list[bool] = []

    @app.task(retry=2, pass_context=True)
    def my_task(job_context: procrastinate.JobContext) -> None:
        job = job_context.job
        task = job_context.task
        last.append(task.retry.get_retry_decision(exception=Exception(), job=job) is None)
        assert job_context.app is app and job_context.worker_name
        assert job_context.abort_reason() is None  # nobody asked this job to stop
        raise Exception("again")

    job_id = my_task.defer()
    for _ in range(3):
        run(app)
        with psycopg.connect(app.connector.url, autocommit=True) as conn:
            conn.execute("UPDATE tracedjobs_jobs SET scheduled_at = NULL WHERE id = %s", (job_id,))
    assert last == [False, False, True]
    assert status(app, job_id) == "failed"


def test_retry_strategies(app: procrastinate.App) -> None:
    """howto/advanced/retry: retry=5, retry=True, RetryStrategy, a custom BaseRetryStrategy."""
    attempts: dict[str, int] = {}

    class RandomRetryStrategy(procrastinate.BaseRetryStrategy):
        max_attempts = 3
        min = 1
        max = 10

        def get_retry_decision(
            self, *, exception: BaseException, job: procrastinate.Job
        ) -> procrastinate.RetryDecision:
            if job.attempts >= self.max_attempts:
                return procrastinate.RetryDecision(should_retry=False)
            wait = random.uniform(self.min, self.max)
            return procrastinate.RetryDecision(
                retry_in={"seconds": wait},
                priority=job.priority + 1,
                queue="another_queue",
                lock="another_lock",
            )

    def flaky(name: str) -> None:
        attempts[name] = attempts.get(name, 0) + 1
        if name != "forever" or attempts[name] < 4:
            raise ConnectionError(name)

    five = app.task(name="five", retry=5)(functools.partial(flaky, "five"))
    forever = app.task(name="forever", retry=True)(functools.partial(flaky, "forever"))
    strategy = app.task(
        name="strategy",
        retry=procrastinate.RetryStrategy(
            max_attempts=10, wait=5, retry_exceptions={ConnectionError, IOError}
        ),
    )(functools.partial(flaky, "strategy"))
    custom = app.task(name="custom", retry=RandomRetryStrategy())(functools.partial(flaky, "c"))

    ids = {t.name: t.defer() for t in (five, forever, strategy, custom)}
    run(app)
    assert attempts == {"five": 6, "forever": 4, "strategy": 1, "c": 1}
    assert status(app, ids["five"]) == "failed"  # retry=5: six attempts
    assert status(app, ids["forever"]) == "succeeded"
    waiting = app.job_manager.get_job(ids["strategy"])
    assert (waiting.status, waiting.attempts) == ("todo", 1)
    moved = app.job_manager.get_job(ids["custom"])
    assert (moved.queue, moved.lock, moved.priority) == ("another_queue", "another_lock", 1)
    assert moved.scheduled_at is not None and moved.scheduled_at > utils.utcnow()


def test_manual_retry_by_id(app: procrastinate.App) -> None:
    """howto/advanced/retry ("Retry a Job Manually")."""

    @app.task
    def boom() -> None:
        raise ValueError("boom")

    job_id = boom.defer()
    run(app)
    job = app.job_manager.get_job(job_id)
    assert job.status == "failed"
    app.job_manager.retry_job_by_id(job.id, utils.utcnow(), job.priority, job.queue_name, job.lock)
    assert status(app, job_id) == "todo"
    run(app)

    async def again() -> None:
        await app.job_manager.retry_job_by_id_async(
            job.id, utils.utcnow(), job.priority, job.queue_name, job.lock
        )

    anyio.run(again)
    types = [e.type for e in app.job_manager.get_job(job_id).events]
    assert types.count("retried") == 2


def test_schedule_at_and_in(app: procrastinate.App) -> None:
    """howto/advanced/schedule."""

    @app.task
    def create_bug(crash_everything: bool) -> None: ...

    @app.task
    def clean() -> None: ...

    dt = datetime.datetime(2038, 1, 19, 3, 14, 7).replace(tzinfo=datetime.UTC)
    bug = create_bug.configure(schedule_at=dt).defer(crash_everything=True)
    soon = clean.configure(schedule_in={"hours": 1, "minutes": 30}).defer()
    assert app.job_manager.get_job(bug).scheduled_at == dt
    delay = app.job_manager.get_job(soon).scheduled_at - utils.utcnow()  # type: ignore[operator]
    assert datetime.timedelta(minutes=89) < delay <= datetime.timedelta(minutes=90)
    run(app)
    assert status(app, bug) == status(app, soon) == "todo"  # not due yet


def test_priorities(app: procrastinate.App) -> None:
    """howto/advanced/priorities: higher first; a task's default priority."""
    order: list[str] = []

    @app.task(priority=3)
    def my_task(label: str) -> None:
        order.append(label)

    my_task.configure(priority=-1).defer(label="low")
    my_task.defer(label="default 3")
    my_task.configure(priority=5).defer(label="high")
    run(app)
    assert order == ["high", "default 3", "low"]


def test_locks_run_sequentially_in_defer_order(app: procrastinate.App) -> None:
    """howto/advanced/locks (same priority: in defer order, never two at once)."""
    order: list[int] = []

    @app.task(lock="my_lock_value")
    async def my_task(a: int) -> None:
        order.append(a)
        await anyio.sleep(0.01)
        order.append(-a)

    job_description = my_task.configure(lock="customer-1")
    for a in (1, 2, 3):
        job_description.defer(a=a)
    run(app, concurrency=3)
    assert order == [1, -1, 2, -2, 3, -3]


def test_queueing_locks(app: procrastinate.App) -> None:
    """howto/advanced/queueing_locks."""

    @app.task(queueing_lock="my_lock_value")
    def my_task(a: int) -> None: ...

    my_task.configure(queueing_lock="arbitrary_string").defer(a=1)
    with pytest.raises(procrastinate.exceptions.AlreadyEnqueued):
        my_task.configure(queueing_lock="arbitrary_string").defer(a=2)
    my_task.defer(a=3)  # the task's own queueing lock is another one
    with pytest.raises(exceptions.AlreadyEnqueued):
        my_task.defer(a=4)


def test_cancel_and_abort(app: procrastinate.App) -> None:
    """howto/advanced/cancellation: cancel a waiting job; abort a running sync job."""

    @app.task(pass_context=True)
    def my_task(context: procrastinate.JobContext) -> None:
        for _ in range(1000):  # at most ~10 s: never outlive the test by long
            if context.should_abort():
                raise exceptions.JobAborted
            time.sleep(0.01)

    waiting = my_task.defer()
    assert app.job_manager.cancel_job_by_id(waiting) is True
    assert status(app, waiting) == "cancelled"

    async def abort_while_running() -> int:
        job_id = await my_task.defer_async()
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(app.run_worker_async, wait=False, install_signal_handlers=False)
            )
            with anyio.fail_after(30):
                while str(await app.job_manager.get_job_status_async(job_id)) != "doing":
                    await anyio.sleep(0.02)
            assert await app.job_manager.cancel_job_by_id_async(job_id, abort=True) is True
        return job_id

    assert status(app, anyio.run(abort_while_running)) == "aborted"


def test_periodic_function_form_with_configure_kwargs(app: procrastinate.App) -> None:
    """howto/advanced/cron ("Scheduling a job multiple times with multiple arguments")."""

    @app.periodic(cron="0 * * * *")
    @app.task
    def cleanup_foobar(timestamp: int) -> None: ...

    @app.task(lock="do_something_lock")
    def do_something(timestamp: int, value: int) -> None: ...

    app.periodic(cron="*/5 * * * *", queue="foo", task_kwargs={"value": 1}, periodic_id="foo")(
        do_something
    )
    app.periodic(cron="*/8 * * * *", queue="bar", task_kwargs={"value": 2}, periodic_id="bar")(
        do_something
    )
    from tracedjobs.periodic import tick_params

    params = {p.periodic_id: tick_params(p, 1_700_000_000) for p in app.periodic_registry.tasks}
    assert params["foo"]["queue_name"] == "foo" and params["bar"]["queue_name"] == "bar"
    assert params["foo"]["lock"] == params["bar"]["lock"] == "do_something_lock"
    assert '"value": 1' in params["foo"]["args"] and '"value": 2' in params["bar"]["args"]
    assert '"timestamp": 1700000000' in params[""]["args"]


def test_external_connection_transaction(app: procrastinate.App, db_url: str) -> None:
    """howto/production/external_connection: configure(connection=conn), sync and async."""

    @app.task
    def process_order(order_id: int) -> None: ...

    with psycopg.connect(db_url) as conn:
        conn.autocommit = False
        committed = process_order.configure(connection=conn).defer(order_id=42)
        conn.commit()
        rolled_back = process_order.configure(connection=conn).defer(order_id=43)
        conn.rollback()

    async def async_version() -> int:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            job_id = await process_order.configure(connection=aconn).defer_async(order_id=44)
            await aconn.commit()
            return job_id

    committed_async = anyio.run(async_version)
    assert status(app, committed) == status(app, committed_async) == "todo"
    with pytest.raises(exceptions.JobNotFound):
        app.job_manager.get_job_status(rolled_back)


def test_stalled_jobs_recipe(app: procrastinate.App) -> None:
    """howto/production/retry_stalled_jobs: the periodic task it suggests."""

    @app.periodic(cron="*/10 * * * *")
    @app.task(queueing_lock="retry_stalled_jobs", pass_context=True)
    async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
        stalled_jobs = await app.job_manager.get_stalled_jobs()
        for job in stalled_jobs:
            await app.job_manager.retry_job(job)

    job_id = retry_stalled_jobs.defer(timestamp=0)
    run(app)
    assert status(app, job_id) == "succeeded"

    async def with_arguments() -> list[procrastinate.Job]:
        return await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=60)

    assert anyio.run(with_arguments) == []


def test_open_and_close_with_context_managers(app: procrastinate.App) -> None:
    """howto/basics/open_connection (the context-manager forms)."""

    @app.task
    def t() -> None: ...

    with app.open():
        t.defer()

    async def main() -> None:
        async with app.open_async():
            await t.defer_async()
            await app.run_worker_async(wait=False)

    anyio.run(main)
    assert [j.status for j in app.job_manager.list_jobs()] == ["succeeded", "succeeded"]


def test_public_names() -> None:
    """docs/reference: names a Procrastinate user imports."""
    for name in (
        "App",
        "Blueprint",
        "JobContext",
        "PsycopgConnector",
        "SyncPsycopgConnector",
        "RetryStrategy",
        "BaseRetryStrategy",
        "RetryDecision",
    ):
        assert hasattr(procrastinate, name), name
    for name in ("AlreadyEnqueued", "TaskNotFound", "UnboundTaskError", "JobAborted"):
        assert issubclass(getattr(exceptions, name), Exception), name
    assert {s.value for s in procrastinate.Status} >= {
        "todo",
        "doing",
        "succeeded",
        "failed",
        "cancelled",
        "aborted",
    }
    job = procrastinate.Job(id=3, task_name="t", queue_name="q", args={"a": 1})
    assert job.call_string == "t[3](a=1)" and job.task_kwargs == {"a": 1}
    assert job.abort_requested is False
