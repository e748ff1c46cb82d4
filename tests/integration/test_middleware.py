"""Task and worker middleware (Procrastinate's): the chain's order, where each layer runs
(the event loop or the sync task's thread), results and exceptions going through it, the
kind checks, and a middleware stopping the worker — with a real worker and database."""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import tracedjobs
from tests.integration.running import FAST, finish
from tracedjobs.exceptions import MiddlewareKindMismatch
from tracedjobs.worker import Worker

Calls = list[tuple[str, str, int]]  # (layer, "before"/"after", thread id)


def sync_layer(calls: Calls, name: str) -> Callable[..., Any]:
    def mw(call_next: Callable[[], Any], context: tracedjobs.JobContext, worker: Any) -> Any:
        calls.append((name, "before", threading.get_ident()))
        try:
            return call_next()
        finally:
            calls.append((name, "after", threading.get_ident()))

    return mw


def async_layer(calls: Calls, name: str) -> Callable[..., Awaitable[Any]]:
    async def mw(
        call_next: Callable[[], Awaitable[Any]], context: tracedjobs.JobContext, worker: Any
    ) -> Any:
        calls.append((name, "before", threading.get_ident()))
        try:
            return await call_next()
        finally:
            calls.append((name, "after", threading.get_ident()))

    return mw


def test_the_chain_runs_outermost_first_and_task_middleware_runs_where_the_task_runs(
    app: tracedjobs.App,
) -> None:
    calls: Calls = []
    ran_in: dict[str, int] = {}

    @app.task(task_middleware=[sync_layer(calls, "own-sync")])
    def sync_task() -> None:
        ran_in["sync"] = threading.get_ident()
        calls.append(("task", "sync", threading.get_ident()))

    @app.task(task_middleware=[async_layer(calls, "own-async")])
    async def async_task() -> None:
        ran_in["async"] = threading.get_ident()
        calls.append(("task", "async", threading.get_ident()))

    loop_thread = threading.get_ident()  # anyio.run below runs the worker in this thread
    s = sync_task.defer()
    jobs = finish(
        app,
        s,
        worker_middleware=[async_layer(calls, "worker")],
        task_middleware=[sync_layer(calls, "wide-sync"), async_layer(calls, "wide-async")],
    )
    a = async_task.defer()
    jobs += finish(
        app,
        a,
        worker_middleware=[async_layer(calls, "worker")],
        task_middleware=[sync_layer(calls, "wide-sync"), async_layer(calls, "wide-async")],
    )
    assert [j.status for j in jobs] == ["succeeded", "succeeded"]

    sync_calls, async_calls = calls[:7], calls[7:]
    # Worker-wide task middleware of the task's kind only, around the task's own.
    assert [c[:2] for c in sync_calls] == [
        ("worker", "before"),
        ("wide-sync", "before"),
        ("own-sync", "before"),
        ("task", "sync"),
        ("own-sync", "after"),
        ("wide-sync", "after"),
        ("worker", "after"),
    ]
    assert [c[:2] for c in async_calls] == [
        ("worker", "before"),
        ("wide-async", "before"),
        ("own-async", "before"),
        ("task", "async"),
        ("own-async", "after"),
        ("wide-async", "after"),
        ("worker", "after"),
    ]
    # Sync task middleware runs in the task's thread; the rest on the event loop.
    assert ran_in["sync"] != loop_thread and ran_in["async"] == loop_thread
    assert {c[2] for c in sync_calls if c[0] in ("wide-sync", "own-sync")} == {ran_in["sync"]}
    assert {c[2] for c in sync_calls if c[0] == "worker"} == {loop_thread}
    assert {c[2] for c in async_calls} == {loop_thread}


def test_results_and_exceptions_go_through_every_layer(app: tracedjobs.App) -> None:
    seen: list[tuple[str, Any]] = []

    async def observe(call_next: Callable[[], Awaitable[Any]], context: Any, worker: Any) -> Any:
        try:
            result = await call_next()
        except Exception as exc:
            seen.append((context.task.name, repr(exc)))
            raise
        seen.append((context.task.name, result))
        return result

    def double(call_next: Callable[[], Any], context: Any, worker: Any) -> Any:
        return call_next() * 2

    @app.task(name="answer", task_middleware=[double])
    def answer() -> int:
        return 21

    @app.task(name="fails", retry=1)
    def fails() -> None:
        raise ValueError("from the task")

    @app.task(name="async-answer")
    async def async_answer() -> str:
        return "yes"

    ok, bad, aok = answer.defer(), fails.defer(), async_answer.defer()
    jobs = finish(app, ok, bad, aok, worker_middleware=[observe])
    assert [j.status for j in jobs] == ["succeeded", "failed", "succeeded"]
    # The failing job was retried once: both attempts went through the middleware, and
    # the worker still saw the exception (retry, then failure).
    assert sorted(seen, key=str) == sorted(
        [
            ("answer", 42),
            ("fails", "ValueError('from the task')"),
            ("fails", "ValueError('from the task')"),
            ("async-answer", "yes"),
        ],
        key=str,
    )
    assert len(jobs[1].attempt_records) == 2
    assert jobs[1].attempt_records[-1].error_type == "ValueError"


def test_a_middleware_can_stop_the_worker(app: tracedjobs.App) -> None:
    ran: list[int] = []

    @app.task(pass_context=True)
    async def work(context: tracedjobs.JobContext) -> None:
        ran.append(context.job.id)

    async def stop_after_one(
        call_next: Callable[[], Awaitable[Any]], context: Any, worker: Worker
    ) -> Any:
        worker.stop()
        return await call_next()

    first = work.defer()
    work.defer()

    async def main() -> None:
        worker = Worker(app, **{**FAST, "worker_middleware": [stop_after_one]})
        with anyio.fail_after(30):
            await worker.run()
        await app.connector.close_async()

    anyio.run(main)
    assert ran == [first]  # the job it wrapped ran to its end; no other was claimed
    assert app.job_manager.get_job_status(first) == "succeeded"


def test_kinds_are_checked_when_declared(app: tracedjobs.App) -> None:
    calls: Calls = []
    with pytest.raises(MiddlewareKindMismatch, match=r"is async but task 'bad' is sync"):

        @app.task(name="bad", task_middleware=[async_layer(calls, "a")])
        def bad() -> None: ...

    with pytest.raises(MiddlewareKindMismatch, match=r"is sync but task 'bad2' is async"):

        @app.task(name="bad2", task_middleware=[sync_layer(calls, "s")])
        async def bad2() -> None: ...

    with pytest.raises(MiddlewareKindMismatch, match=r"worker middleware .* must be `async def`"):
        Worker(app, worker_middleware=[sync_layer(calls, "s")])
    with pytest.raises(TypeError, match="is not callable"):
        Worker(app, task_middleware=["not a function"])
    with pytest.raises(TypeError, match="must be a list of callables"):
        app.run_worker(worker_middleware=async_layer(calls, "a"))  # type: ignore[arg-type]
    # A partial of an async function, and an object with an async __call__, are async.

    class Tracing:
        async def __call__(self, call_next: Any, context: Any, worker: Any) -> Any:
            return await call_next()

    Worker(app, worker_middleware=[functools.partial(async_layer(calls, "a")), Tracing()])
    assert calls == []
