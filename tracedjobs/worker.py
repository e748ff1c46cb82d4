"""The worker: claims jobs, runs them, records their results, and shuts down cleanly.

One loop owns the database round trips: whenever a slot frees up it records the finished
attempts *and* claims replacements in a single transaction, so a busy worker pays one round
trip per batch of jobs, and a result is durable before the next job of that slot starts.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
from anyio.abc import TaskGroup
from psycopg_pool import AsyncConnectionPool

from tracedjobs import gauges, heartbeat, periodic, retry, telemetry
from tracedjobs.connector import describe_connection_error
from tracedjobs.context import JobContext
from tracedjobs.exceptions import DeferJob, JobAborted, TaskNotFound
from tracedjobs.jobs import AttemptResult, Job, Outcome, Status

if TYPE_CHECKING:
    from tracedjobs.app import App
    from tracedjobs.tasks import Task

logger = logging.getLogger("tracedjobs.worker")

DEFAULT_POLLING_INTERVAL = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_STALLED_WORKER_TIMEOUT = 30.0
_MAX_ERROR_MESSAGE = 4000
_DB_ERRORS = (psycopg.OperationalError, psycopg.errors.AdminShutdown, OSError)


class _Running:
    """Book-keeping for one job in flight."""

    __slots__ = ("context", "scope", "task")

    def __init__(self, context: JobContext, task: Task[Any, Any] | None) -> None:
        self.context = context
        self.task = task
        self.scope: anyio.CancelScope | None = None


class _Submitted:
    """A finished attempt waiting to be written; ``done`` fires once it is."""

    __slots__ = ("done", "recorded", "result")

    def __init__(self, result: AttemptResult) -> None:
        self.result = result
        self.done = anyio.Event()
        self.recorded = False


class Worker:
    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        name: str | None = None,
        wait: bool = True,
        listen_notify: bool = True,
        polling_interval: float = DEFAULT_POLLING_INTERVAL,
        update_heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        stalled_worker_timeout: float = DEFAULT_STALLED_WORKER_TIMEOUT,
        rescue_stalled: bool = True,
        periodic_tasks: bool = True,
        periodic_catch_up: float = periodic.DEFAULT_CATCH_UP_SECONDS,
        install_signal_handlers: bool = True,
        shutdown_timeout: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if stalled_worker_timeout <= update_heartbeat_interval:
            raise ValueError(
                "stalled_worker_timeout must be longer than update_heartbeat_interval, "
                "or live workers would be declared dead"
            )
        self.app = app
        self.manager = app.job_manager
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency
        self.id = str(uuid.uuid4())
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.name = name or f"{self.hostname}:{self.pid}"
        self.wait = wait
        self.listen_notify = listen_notify
        self.polling_interval = polling_interval
        self.update_heartbeat_interval = update_heartbeat_interval
        self.stalled_worker_timeout = stalled_worker_timeout
        self.rescue_stalled = rescue_stalled
        self.periodic_tasks = periodic_tasks and wait
        self.periodic_catch_up = periodic_catch_up
        self.install_signal_handlers = install_signal_handlers
        self.shutdown_timeout = shutdown_timeout

        self._running: dict[int, _Running] = {}
        self._executing = 0  # jobs whose function has not returned yet
        self._pending: list[_Submitted] = []
        self._stopping = False
        self._wake: anyio.Event | None = None
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._pool: AsyncConnectionPool[Any] | None = None
        self._signals_seen = 0
        self.jobs_processed = 0

    # -- public ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; running jobs finish, then ``run()`` returns."""
        if not self._stopping:
            self._stopping = True
            self._poke()

    async def run(self) -> None:
        self._pool = AsyncConnectionPool(
            self.app.connector.url,
            min_size=2,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
            name=f"tracedjobs-worker-{self.id[:8]}",
        )
        try:
            await self._pool.open(wait=True, timeout=30)
        except Exception as exc:
            await self._pool.close()
            raise psycopg.OperationalError(
                describe_connection_error(self.app.connector.url, exc)
            ) from exc
        try:
            await self._register()
            logger.info(
                "worker %s (%s) started: queues=%s concurrency=%d",
                self.name,
                self.id,
                ",".join(self.queues) if self.queues else "all",
                self.concurrency,
            )
            async with anyio.create_task_group() as tg:
                if (
                    self.install_signal_handlers
                    and threading.current_thread() is threading.main_thread()
                ):
                    tg.start_soon(self._signal_loop)
                tg.start_soon(self._heartbeat_loop)
                if self.rescue_stalled or self.wait:
                    tg.start_soon(self._rescue_loop)
                if self.listen_notify:
                    tg.start_soon(self._listen_loop)
                tg.start_soon(self._abort_poll_loop)
                tg.start_soon(gauges.export_loop, self)
                if self.periodic_tasks and self.app.periodic_registry.tasks:
                    tg.start_soon(self._periodic_loop)
                telemetry.worker_started(self)
                await self._fetch_loop(tg)
                tg.cancel_scope.cancel()
            await self._unregister()
            logger.info("worker %s stopped after %d jobs", self.name, self.jobs_processed)
        finally:
            await self._pool.close()

    # -- the fetch loop ----------------------------------------------------------------

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _fetch_loop(self, tg: TaskGroup) -> None:
        assert self._pool is not None
        backoff = 0.0
        self._wake = anyio.Event()
        while True:
            if self._stopping and self._executing == 0 and not self._pending:
                return
            free = 0 if self._stopping else self.concurrency - self._executing
            submitted, self._pending = self._pending, []
            # Pokes from here on (a job finishing, a notification) wake the next wait.
            self._wake = anyio.Event()
            timeout: float | None = None
            if submitted or free > 0:
                try:
                    async with self._pool.connection() as conn:
                        rows, recorded = await self.manager.claim_jobs(
                            conn,
                            worker_id=self.id,
                            worker_name=self.name,
                            queues=self.queues,
                            limit=free,
                            finished=[s.result for s in submitted],
                        )
                        if not rows and free > 0:
                            timeout = await self._idle_timeout(conn)
                    backoff = 0.0
                except (*_DB_ERRORS, psycopg.Error) as exc:
                    self._pending = submitted + self._pending
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                    logger.warning(
                        "database unreachable (%s); retrying in %.1f s", _first_line(exc), backoff
                    )
                    await anyio.sleep(backoff)
                    continue
                for item in submitted:
                    item.recorded = item.result.job_id in recorded
                    item.done.set()
                for row in rows:
                    self._executing += 1
                    tg.start_soon(self._run_job, row)
                if rows or self._stopping:
                    # Stopping: re-check at the top whether that was the last job.
                    continue
                if not self.wait and self._executing == 0 and not self._pending:
                    return
            if self._pending:
                continue
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await self._wake.wait()

    async def _idle_timeout(self, conn: psycopg.AsyncConnection[Any]) -> float | None:
        """How long to sleep with nothing to claim: until the next scheduled job, at most
        the polling interval (a fallback for missed notifications)."""
        if not self.wait:
            return None
        poll = self.polling_interval if self.listen_notify else min(self.polling_interval, 1.0)
        next_in = await self.manager.next_scheduled_in(conn, self.queues)
        if next_in is not None:
            return max(0.0, min(poll, next_in + 0.001))
        return poll

    # -- running one job ---------------------------------------------------------------

    async def _run_job(self, row: dict[str, Any]) -> None:
        job = Job.from_row(row)
        task = self.app.tasks.get(job.task_name)
        context = JobContext(
            app=self.app,
            job=job,
            task=task,  # type: ignore[arg-type]  # None only for an unknown task, which fails
            worker_name=self.name,
            worker_id=self.id,
        )
        running = _Running(context, task)
        self._running[job.id] = running
        try:
            with telemetry.process_span(
                job,
                worker_name=self.name,
                trace_parent=self.app.trace_parent,
                record_args=self.app.record_args,
            ) as span:
                context.trace_id, context.span_id = span.trace_id, span.span_id
                telemetry.record_queue_wait(job.queue_name, job.task_name, row["queue_wait"])
                with telemetry.job_log_context(job, span):
                    started = time.perf_counter()
                    exception = await self._execute(job, task, running)
                    duration = time.perf_counter() - started
                result = self._result(job, task, exception, duration, span)
                self._executing -= 1
                submitted = _Submitted(result)
                self._pending.append(submitted)
                self._poke()
                await submitted.done.wait()
                self._log_result(job, result, submitted.recorded, duration)
                if submitted.recorded:
                    span.finish(str(result.outcome), exception, result.error_type)
                    telemetry.record_attempt(
                        queue=job.queue_name,
                        task_name=job.task_name,
                        outcome=str(result.outcome),
                        duration=duration,
                        error_type=result.error_type,
                    )
                else:
                    span.finish_discarded()
        finally:
            self._running.pop(job.id, None)
            self.jobs_processed += 1

    async def _execute(
        self, job: Job, task: Task[Any, Any] | None, running: _Running
    ) -> BaseException | None:
        """Run the task function; returns the exception it ended with (None on success)."""
        if task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            return TaskNotFound(
                f"no task named {job.task_name!r} is registered in this worker's app "
                f"(known: {known})"
            )
        deadline = anyio.current_time() + task.timeout if task.timeout else math.inf
        args: tuple[Any, ...] = (running.context,) if task.pass_context else ()
        kwargs = job.args if isinstance(job.args, dict) else {}
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                running.scope = scope
                if task.is_async:
                    await task.func(*args, **kwargs)
                else:
                    await anyio.to_thread.run_sync(
                        functools.partial(task.func, *args, **kwargs),
                        abandon_on_cancel=True,
                        limiter=self._limiter,
                    )
        except (Exception, SystemExit) as exc:
            if running.context.should_abort() and not isinstance(exc, JobAborted):
                # Asked to stop: however the task then ends, the job is aborted, not retried.
                aborted = JobAborted(f"job {job.id} was aborted ({type(exc).__name__}: {exc})")
                aborted.__cause__ = exc
                return aborted
            return exc
        if scope.cancelled_caught:
            if running.context.should_abort():
                return JobAborted(f"job {job.id} was aborted")
            if task.is_async:
                return TimeoutError(f"job {job.id} ran longer than its timeout of {task.timeout} s")
            return TimeoutError(
                f"job {job.id} ran longer than its timeout of {task.timeout} s "
                "(the sync task's thread cannot be interrupted and may still be running)"
            )
        return None

    def _result(
        self,
        job: Job,
        task: Task[Any, Any] | None,
        exception: BaseException | None,
        duration: float,
        span: telemetry.AttemptSpan,
    ) -> AttemptResult:
        common: dict[str, Any] = {
            "job_id": job.id,
            "attempt_id": job.attempt_id,
            "duration": duration,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
        }
        if exception is None:
            return AttemptResult(
                status=Status.SUCCEEDED, outcome=Outcome.SUCCEEDED, event="succeeded", **common
            )
        if isinstance(exception, DeferJob):
            return AttemptResult(
                status=Status.TODO,
                outcome=Outcome.DEFERRED,
                event="rescheduled",
                increment_attempts=exception.increment_attempts,
                retry_in=exception.delay,
                **common,
            )
        common["error_type"] = telemetry.error_type_of(exception)
        # PostgreSQL text cannot hold NUL: one such message must not wedge the worker.
        common["error_message"] = str(exception)[:_MAX_ERROR_MESSAGE].replace("\x00", "\\x00")
        common["traceback"] = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        ).replace("\x00", "\\x00")
        if isinstance(exception, JobAborted):
            return AttemptResult(
                status=Status.ABORTED, outcome=Outcome.ABORTED, event="aborted", **common
            )
        decision = None
        if task is not None:
            try:
                decision = retry.decide(task.retry_strategy, exception, job)
            except Exception:
                logger.exception("retry strategy of task %s raised; not retrying", job.task_name)
        if decision is None:
            return AttemptResult(
                status=Status.FAILED, outcome=Outcome.FAILED, event="failed", **common
            )
        return AttemptResult(
            status=Status.TODO,
            outcome=Outcome.RETRIED,
            event="deferred_for_retry",
            retry_in=decision.delay_seconds,
            retry_at=decision.retry_at,
            priority=decision.priority,
            queue=decision.queue,
            lock=decision.lock,
            **common,
        )

    def _log_result(self, job: Job, result: AttemptResult, recorded: bool, duration: float) -> None:
        if not recorded:
            logger.warning(
                "job %s (%s) finished (%s) after this worker was declared dead and the attempt "
                "was recorded lost; this late result was discarded",
                job.id,
                job.task_name,
                result.outcome,
            )
            return
        if result.outcome in (Outcome.FAILED, Outcome.RETRIED):
            logger.warning(
                "job %s (%s) attempt %d %s in %.3f s: %s: %s",
                job.id,
                job.task_name,
                job.attempts + 1,
                result.outcome,
                duration,
                result.error_type,
                result.error_message,
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s) %s in %.3f s", job.id, job.task_name, result.outcome, duration
            )

    # -- aborts ------------------------------------------------------------------------

    def _abort(self, job_id: int) -> None:
        running = self._running.get(job_id)
        if running is None or running.context.should_abort():
            return
        logger.info("job %s: abort requested", job_id)
        running.context._abort.set()
        # Async tasks are cancelled; sync ones see context.should_abort().
        if running.task is not None and running.task.is_async and running.scope is not None:
            running.scope.cancel()

    async def _abort_poll_loop(self) -> None:
        """A fallback for missed abort notifications."""
        assert self._pool is not None
        while True:
            await anyio.sleep(self.polling_interval)
            if not self._running:
                continue
            try:
                async with self._pool.connection() as conn:
                    for job_id in await self.manager.aborting_job_ids(conn, self.id):
                        self._abort(job_id)
            except _DB_ERRORS:
                pass  # the fetch loop reports database trouble

    # -- LISTEN/NOTIFY -----------------------------------------------------------------

    async def _listen_loop(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.app.connector.url, autocommit=True
                )
            except _DB_ERRORS:
                await anyio.sleep(self.polling_interval)
                continue
            try:
                async with conn:
                    await conn.execute("LISTEN tracedjobs_jobs")
                    await conn.execute("LISTEN tracedjobs_abort")
                    self._poke()  # anything deferred while we were not listening
                    async for notify in conn.notifies():
                        if notify.channel == "tracedjobs_abort":
                            self._abort(int(notify.payload))
                        elif self.queues is None or notify.payload in self.queues:
                            self._poke()
            except _DB_ERRORS as exc:
                logger.warning("lost the LISTEN connection (%s); reconnecting", _first_line(exc))
                await anyio.sleep(min(self.polling_interval, 1.0))

    # -- heartbeats, rescue, periodic tasks --------------------------------------------

    async def _register(self) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            await self.manager.register_worker(
                conn,
                id=self.id,
                name=self.name,
                hostname=self.hostname,
                pid=self.pid,
                queues=self.queues,
                concurrency=self.concurrency,
            )

    async def _unregister(self) -> None:
        assert self._pool is not None
        try:
            async with self._pool.connection() as conn:
                await self.manager.unregister_worker(conn, self.id)
        except _DB_ERRORS as exc:
            logger.warning("could not delete the worker row (%s)", _first_line(exc))

    async def _heartbeat_loop(self) -> None:
        assert self._pool is not None
        while True:
            slept = anyio.current_time()
            await anyio.sleep(self.update_heartbeat_interval)
            late = anyio.current_time() - slept - self.update_heartbeat_interval
            if late > self.stalled_worker_timeout / 2:
                # A sync call inside an async task blocks the event loop, heartbeats with it.
                logger.warning(
                    "worker %s: heartbeat %.1f s late: the event loop was blocked (a blocking "
                    "call in an async task?) or the process was paused; peers declare a worker "
                    "dead after %.0f s without heartbeat and rescue its jobs",
                    self.name,
                    late,
                    self.stalled_worker_timeout,
                )
            try:
                async with self._pool.connection() as conn:
                    if not await self.manager.heartbeat(conn, self.id):
                        logger.warning(
                            "worker %s was declared dead by a peer (no heartbeat for %.0f s); "
                            "registering again. Jobs it was running were rescued and their "
                            "results will be discarded.",
                            self.name,
                            self.stalled_worker_timeout,
                        )
                        await self._register()
            except _DB_ERRORS as exc:
                logger.warning("heartbeat failed (%s)", _first_line(exc))

    async def _rescue_loop(self) -> None:
        """Rescue the jobs of dead workers (or just prune their rows when rescue is off)."""
        assert self._pool is not None
        while True:
            try:
                async with self._pool.connection() as conn:
                    if self.rescue_stalled:
                        rescued = await self.manager.rescue_dead_workers(
                            conn,
                            self.stalled_worker_timeout,
                            functools.partial(heartbeat.decide_lost, self.app),
                            exclude=self.id,
                        )
                        for job, result in rescued:
                            logger.warning(
                                "job %s (%s) was lost by its worker; now %s",
                                job.id,
                                job.task_name,
                                result.status,
                            )
                            telemetry.record_attempt(
                                queue=job.queue_name,
                                task_name=job.task_name,
                                outcome=str(Outcome.LOST),
                                duration=None,
                                error_type=result.error_type,
                            )
                    else:
                        await self.manager.prune_dead_workers(conn, self.stalled_worker_timeout)
                    await self.manager.prune_periodic_ticks(conn)
            except (*_DB_ERRORS, psycopg.Error) as exc:
                logger.warning("stalled-job rescue failed (%s)", _first_line(exc))
            await anyio.sleep(self.update_heartbeat_interval)

    async def _periodic_loop(self) -> None:
        assert self._pool is not None
        tasks = self.app.periodic_registry.tasks
        since = time.time() - self.periodic_catch_up
        while True:
            now = time.time()
            try:
                async with self._pool.connection() as conn:
                    for p in tasks:
                        await periodic.defer_due_ticks(self.manager, conn, p, since=since, now=now)
                since = now
            except (*_DB_ERRORS, psycopg.Error) as exc:
                logger.warning("periodic deferral failed (%s); will catch up", _first_line(exc))
            next_tick = min(p.next_tick_after(time.time()) for p in tasks)
            await anyio.sleep(max(0.0, next_tick - time.time()) + 0.005)

    # -- signals -----------------------------------------------------------------------

    async def _signal_loop(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                self._signals_seen += 1
                if self._signals_seen == 1:
                    logger.warning(
                        "received %s: stopping, waiting for %d running job(s) to finish "
                        "(send %s again to exit at once)",
                        name,
                        self._executing,
                        name,
                    )
                    self.stop()
                    if self.shutdown_timeout is not None:
                        self._arm_shutdown_timeout()
                else:
                    self._exit_now(name)

    def _arm_shutdown_timeout(self) -> None:
        timeout = self.shutdown_timeout
        assert timeout is not None

        def expire() -> None:
            self._exit_now(f"shutdown timeout of {timeout} s")

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()

    def _exit_now(self, reason: str) -> None:
        logger.warning(
            "%s: exiting at once; %d job(s) left in doing will be rescued after %.0f s",
            reason,
            len(self._running),
            self.stalled_worker_timeout,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
