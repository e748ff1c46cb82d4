"""Running one task function: async ones in the event loop, sync ones in daemon threads.

Whatever the function does — returns, raises any exception, ``SystemExit``,
``KeyboardInterrupt``, an exception whose ``__str__`` raises, runs past its timeout — the
caller gets an :class:`Ended` back and the worker goes on. Only the worker's own
cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tracedjobs import middleware
from tracedjobs.context import AbortReason
from tracedjobs.exceptions import JobAborted

if TYPE_CHECKING:
    from tracedjobs.context import JobContext
    from tracedjobs.jobs import Job
    from tracedjobs.tasks import Task


@dataclasses.dataclass
class Ended:
    """How a task function ended."""

    exception: BaseException | None  # None: it returned
    duration: float
    # A sync function still running after its timeout or an abort at shutdown.
    thread_abandoned: bool = False


class TaskThreads:
    """Daemon threads for sync tasks.

    A running Python thread cannot be stopped: a sync task past its timeout runs on. Daemon
    threads never keep the process alive once the worker is done; the worker counts each
    abandoned thread against its concurrency until it ends, so they cannot pile up.
    """

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._count = 0

    def submit(self, fn: Callable[[], None]) -> None:
        self._work.put(fn)
        if not self._idle.acquire(blocking=False):
            self._count += 1
            threading.Thread(
                target=self._serve, name=f"tracedjobs-task-{self._count}", daemon=True
            ).start()

    def _serve(self) -> None:
        while (fn := self._work.get()) is not None:
            fn()  # never raises: see run_sync
            self._idle.release()

    def close(self) -> None:
        """Let idle threads end (busy ones end when their function returns)."""
        for _ in range(self._count):
            self._work.put(None)


class Execution:
    """One job's task function in flight (inside its middleware), with what is needed to
    abort it."""

    def __init__(
        self,
        job: Job,
        task: Task[Any, Any],
        context: JobContext,
        threads: TaskThreads,
        task_middleware: Sequence[middleware.TaskMiddleware] = (),
        worker_middleware: Sequence[middleware.WorkerMiddleware] = (),
        worker: Any = None,
    ) -> None:
        self.job = job
        self.task = task
        self.context = context
        self._threads = threads
        self._task_middleware = task_middleware
        self._worker_middleware = worker_middleware
        self._worker = worker
        self._deadline: asyncio.Timeout | None = None
        # Set once the thread of a sync task has returned (it may outlive the attempt).
        self.thread_done = task.is_async
        self.on_thread_done: Callable[[], None] = lambda: None

    @property
    def aborted_by(self) -> AbortReason | None:
        """Why the job was asked to stop (the first reason wins), as its context says."""
        return self.context._abort_reason

    def abort(self, reason: AbortReason) -> None:
        """Ask the job to stop: ``should_abort()`` turns true and an async task is
        cancelled. A sync task must notice by itself (see :meth:`abandon`)."""
        if self.context._abort_reason is None:
            self.context._abort_reason = reason
        if self.task.is_async:
            self._expire()

    def abandon(self) -> None:
        """Stop waiting for a sync task that ignored an abort (its thread runs on)."""
        self._expire()

    def _expire(self) -> None:
        if self._deadline is not None and not self._deadline.expired():
            with contextlib.suppress(RuntimeError):  # not entered yet, or already left
                self._deadline.reschedule(asyncio.get_running_loop().time())

    async def run(self) -> Ended:
        task, job = self.task, self.job
        args: tuple[Any, ...] = (self.context,) if task.pass_context else ()
        call: Callable[[], Any] = functools.partial(task.func, *args, **job.args)
        if self._task_middleware:
            call = middleware.compose(self._task_middleware, call, self.context, self._worker)
        loop = asyncio.get_running_loop()
        outcome: BaseException | None = None
        started = time.perf_counter()
        deadline = asyncio.timeout_at(loop.time() + task.timeout if task.timeout else None)
        self._deadline = deadline
        interrupted = False
        try:
            async with deadline:
                if self.aborted_by is not None and task.is_async:
                    self._expire()
                if self._worker_middleware:
                    run = functools.partial(self._run_raising, call)
                    await middleware.compose(
                        self._worker_middleware, run, self.context, self._worker
                    )()
                elif task.is_async:
                    await call()
                else:
                    outcome = await self._run_sync(call)
        except TimeoutError as exc:
            # Raised by the deadline (a timeout, or an abort that expired it early) — or
            # by the task itself, then it is an ordinary error.
            interrupted = deadline.expired()
            outcome = None if interrupted else exc
        except BaseException as exc:
            # Whatever the task raised, its own CancelledError, SystemExit and
            # KeyboardInterrupt included: nothing but this job's deadline cancels it.
            outcome = exc
        duration = time.perf_counter() - started
        if interrupted:
            # At the deadline the abort flag turns on, for a sync task to notice.
            if self.context._abort_reason is None:
                self.context._abort_reason = AbortReason.TIMEOUT
            return Ended(self._interruption(), duration, thread_abandoned=not self.thread_done)
        return Ended(outcome, duration)

    def _interruption(self) -> BaseException:
        job, task = self.job, self.task
        if self.aborted_by is AbortReason.TIMEOUT:
            note = (
                ""
                if task.is_async
                else " (a sync task's thread cannot be interrupted: it counts against the "
                "worker's concurrency until it returns)"
            )
            return TimeoutError(
                f"job {job.id} ran longer than its timeout of {task.timeout} s{note}"
            )
        if self.aborted_by is AbortReason.SHUTDOWN:
            return JobAborted(f"job {job.id} was aborted: the worker is shutting down")
        return JobAborted(f"job {job.id} was aborted")

    async def _run_raising(self, call: Callable[[], Any]) -> Any:
        """The task as worker middleware's ``call_next``: returns what the task returned,
        raises what it raised (a sync task's exception, raised again on the loop)."""
        if self.task.is_async:
            return await call()
        returned: list[Any] = []
        outcome = await self._run_sync(call, returned)
        if outcome is not None:
            raise outcome
        return returned[0]

    async def _run_sync(
        self, fn: Callable[[], Any], returned: list[Any] | None = None
    ) -> BaseException | None:
        """Run ``fn`` in a task thread; returns what it raised (what it returned goes to
        ``returned``)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        ctx = contextvars.copy_context()

        def call() -> None:
            try:
                value = ctx.run(fn)
                if returned is not None:
                    returned.append(value)
                outcome: BaseException | None = None
            except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                outcome = exc
            try:
                loop.call_soon_threadsafe(self._thread_returned, done, outcome)
            except RuntimeError:
                pass  # the event loop is gone: the worker has stopped

        self.thread_done = False
        self._threads.submit(call)
        return await done

    def _thread_returned(
        self, future: asyncio.Future[BaseException | None], outcome: BaseException | None
    ) -> None:
        self.thread_done = True
        if not future.done():  # else: cancelled, the attempt ended without waiting for us
            future.set_result(outcome)
        self.on_thread_done()
