"""Middleware around each job's task, as in Procrastinate (its task and worker middleware).

A middleware is a callable ``(call_next, context, worker)``: it calls ``call_next()`` (or
awaits it) to run the next middleware or the task, and returns what that returned.

- **Task middleware** runs where the task runs: a plain ``def`` wraps a sync task, in the
  task's thread (so it can manage thread-local state such as Django's connections); an
  ``async def`` wraps an async task, on the event loop. Declared on a task
  (``@app.task(task_middleware=[...])``, whose kind must match) or on a worker
  (``run_worker(task_middleware=[...])``, applied to the tasks of its kind).
- **Worker middleware** is always ``async def`` and wraps every job on the event loop, sync
  and async tasks alike (``run_worker(worker_middleware=[...])``).

Outermost first: worker middleware, the worker's task middleware, the task's own, the task.
The task's exception goes through every layer to the worker, which decides the job's fate
from it: a middleware that swallows it turns a failure into a success, so clean up in a
``finally`` and let it propagate. The task's timeout covers the whole chain.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tracedjobs.exceptions import MiddlewareKindMismatch

if TYPE_CHECKING:
    from tracedjobs.context import JobContext
    from tracedjobs.worker import Worker

TaskMiddleware = Callable[[Callable[[], Any], "JobContext", "Worker"], Any]
WorkerMiddleware = Callable[[Callable[[], Awaitable[Any]], "JobContext", "Worker"], Awaitable[Any]]


def is_async(middleware: Callable[..., Any]) -> bool:
    """Whether a middleware is ``async def`` (a function, a ``functools.partial`` of one, or
    an object whose ``__call__`` is)."""
    func = _unwrap(middleware)
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - the method, not callability
    )


def _kind(is_async_: bool) -> str:
    return "async" if is_async_ else "sync"


def task_middleware(
    middleware: Sequence[TaskMiddleware] | None, *, task_name: str | None, is_async_task: bool
) -> tuple[TaskMiddleware, ...]:
    """A task's own middleware, checked: each callable and of the task's kind."""
    checked = _callables(middleware, "task middleware")
    for mw in checked:
        if is_async(mw) != is_async_task:
            raise MiddlewareKindMismatch(
                f"task middleware {_name(mw)} is {_kind(is_async(mw))} but task "
                f"{task_name!r} is {_kind(is_async_task)}: a sync task takes plain `def` "
                "middleware (run in its thread), an async task `async def` middleware"
            )
    return checked


def worker_task_middleware(
    middleware: Sequence[TaskMiddleware] | None,
) -> tuple[TaskMiddleware, ...]:
    """A worker's task middleware, checked (each wraps the tasks of its own kind)."""
    return _callables(middleware, "task middleware")


def worker_middleware(
    middleware: Sequence[WorkerMiddleware] | None,
) -> tuple[WorkerMiddleware, ...]:
    """A worker's worker middleware, checked: each callable and ``async def``."""
    checked = _callables(middleware, "worker middleware")
    for mw in checked:
        if not is_async(mw):
            raise MiddlewareKindMismatch(
                f"worker middleware {_name(mw)} must be `async def`: it wraps every job on "
                "the event loop (a sync task's thread included); for code in a sync task's "
                "thread, use task_middleware"
            )
    return checked


def chain_for(
    worker_wide: Sequence[TaskMiddleware], own: Sequence[TaskMiddleware], is_async_task: bool
) -> tuple[TaskMiddleware, ...]:
    """A task's middleware on a worker, outermost first: the worker's of its kind, its own."""
    return (*(mw for mw in worker_wide if is_async(mw) == is_async_task), *own)


def compose(
    middleware: Sequence[Callable[..., Any]],
    call: Callable[[], Any],
    context: JobContext,
    worker: Worker,
) -> Callable[[], Any]:
    """``call`` wrapped in ``middleware`` (first outermost): call it (sync) or await its
    result (async)."""
    for mw in reversed(middleware):
        call = functools.partial(mw, call, context, worker)
    return call


def _callables(middleware: Sequence[Any] | None, what: str) -> tuple[Any, ...]:
    if middleware is None:
        return ()
    if callable(middleware) or isinstance(middleware, str | bytes):
        raise TypeError(f"{what} must be a list of callables, not {middleware!r}")
    checked = tuple(middleware)
    for mw in checked:
        if not callable(mw):
            raise TypeError(
                f"{what} {mw!r} is not callable: expected a function (call_next, context, worker)"
            )
    return checked


def _unwrap(middleware: Callable[..., Any]) -> Callable[..., Any]:
    """The function under any ``functools.partial`` layers."""
    while isinstance(middleware, functools.partial):
        middleware = middleware.func
    return middleware


def _name(middleware: Callable[..., Any]) -> str:
    func = _unwrap(middleware)
    return repr(getattr(func, "__qualname__", func))
