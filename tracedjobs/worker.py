"""The worker: claims jobs, runs them, records their results, and shuts down cleanly.

One loop owns the job round trips: whenever a slot frees up it records the finished
attempts *and* claims replacements in one transaction, so a busy worker pays one round
trip per batch of jobs, and a result is durable before its job counts as done. Side loops
(heartbeat, rescue, LISTEN, abort polling, periodic deferral, gauges) run beside it under
one error policy (``supervisor.py``): none of them can stop the worker or its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import anyio
import psycopg
from anyio.abc import TaskGroup

from tracedjobs import gauges, middleware, outcomes, periodic, supervisor, telemetry
from tracedjobs.connector import first_line
from tracedjobs.context import AbortReason, JobContext
from tracedjobs.exceptions import JobAborted, TaskNotFound
from tracedjobs.execution import Ended, Execution, TaskThreads
from tracedjobs.heartbeat import Heartbeat, rescue
from tracedjobs.jobs import AttemptResult, Job, Outcome, Status
from tracedjobs.store import ABORT_CHANNEL, Batch, PostgresStore, WorkerInfo, WorkerStore

if TYPE_CHECKING:
    from tracedjobs.app import App

logger = logging.getLogger("tracedjobs.worker")

DEFAULT_POLLING_INTERVAL = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_STALLED_WORKER_TIMEOUT = 30.0
# Exchanges (hand in results, claim jobs) in flight at once while a backlog lasts.
MAX_EXCHANGES = 2
# A prefetched job starts without a check while this worker's last heartbeat went through
# less than this part of the stalled timeout ago (a peer rescues after the whole of it).
SAFE_FRACTION = 0.8
SPLIT_FROM = 40  # concurrency from which claims are split (each exchange claims half)
# After a shutdown's abort, how long a sync task gets to notice should_abort().
SYNC_ABORT_GRACE = 5.0
DeleteJobs = Literal["never", "successful", "always"]
_DELETE_STATUSES: dict[str, tuple[str, ...]] = {
    "never": (),
    "successful": ("succeeded",),
    "always": ("succeeded", "failed", "cancelled", "aborted"),
}


class WorkerOptions(TypedDict, total=False):
    """Options of ``app.run_worker()`` — Procrastinate's names, plus a few of ours."""

    queues: Sequence[str] | None
    name: str | None
    concurrency: int
    wait: bool
    listen_notify: bool
    fetch_job_polling_interval: float
    abort_job_polling_interval: float
    shutdown_graceful_timeout: float | None
    delete_jobs: DeleteJobs | None
    additional_context: dict[str, Any] | None
    install_signal_handlers: bool
    update_heartbeat_interval: float
    stalled_worker_timeout: float
    task_middleware: Sequence[middleware.TaskMiddleware] | None
    worker_middleware: Sequence[middleware.WorkerMiddleware] | None
    # tracedjobs' own:
    prefetch: int
    rescue_stalled: bool
    periodic_tasks: bool
    periodic_catch_up: float
    retention: float | None
    # Older tracedjobs names, still accepted:
    polling_interval: float
    shutdown_timeout: float | None


_ALIASES = {
    "polling_interval": "fetch_job_polling_interval",
    "shutdown_timeout": "shutdown_graceful_timeout",
}


class _Submitted:
    """A finished attempt waiting to be written; ``done`` resolves once its fate is known.
    ``frees`` says that writing it may make a job ready (a retry, a lock released)."""

    __slots__ = ("done", "frees", "recorded", "result")

    def __init__(self, result: AttemptResult, frees: bool = False) -> None:
        self.result = result
        self.frees = frees
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.recorded = False

    def settle(self, recorded: bool) -> None:
        self.recorded = recorded
        if not self.done.done():
            self.done.set_result(None)


class Worker:
    def __init__(self, app: App, *, store: WorkerStore | None = None, **options: Any) -> None:
        unknown = set(options) - set(WorkerOptions.__annotations__)
        if unknown:
            raise TypeError(
                f"unknown worker option(s) {', '.join(sorted(unknown))}; valid options: "
                f"{', '.join(sorted(WorkerOptions.__annotations__))}"
            )
        for old, new in _ALIASES.items():
            if old in options:
                options.setdefault(new, options.pop(old))
        o: WorkerOptions = options  # type: ignore[assignment]
        concurrency = o.get("concurrency", 1)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be a whole number, at least 1")
        prefetch = o.get("prefetch", 0)
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError("prefetch must be a whole number, at least 0")
        self.update_heartbeat_interval = float(
            o.get("update_heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)
        )
        self.stalled_worker_timeout = float(
            o.get("stalled_worker_timeout", DEFAULT_STALLED_WORKER_TIMEOUT)
        )
        if self.stalled_worker_timeout <= self.update_heartbeat_interval:
            raise ValueError(
                "stalled_worker_timeout must be longer than update_heartbeat_interval, "
                "or live workers would be declared dead"
            )
        delete_jobs = o.get("delete_jobs") or "never"
        if str(delete_jobs) not in _DELETE_STATUSES:
            raise ValueError(
                f"delete_jobs must be one of {', '.join(_DELETE_STATUSES)}, not {delete_jobs!r}"
            )
        self.app = app
        queues = o.get("queues")
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.id = str(uuid.uuid4())
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.name = o.get("name") or f"{self.hostname}:{self.pid}"
        self.wait = o.get("wait", True)
        self.listen_notify = o.get("listen_notify", True)
        self.polling_interval = float(o.get("fetch_job_polling_interval", DEFAULT_POLLING_INTERVAL))
        self.abort_polling_interval = float(
            o.get("abort_job_polling_interval", self.polling_interval)
        )
        self.shutdown_graceful_timeout = o.get("shutdown_graceful_timeout")
        self.delete_statuses = _DELETE_STATUSES[str(delete_jobs)]
        self.additional_context = dict(o.get("additional_context") or {})
        self.install_signal_handlers = o.get("install_signal_handlers", True)
        self.task_middleware = (
            *app.task_middleware,
            *middleware.worker_task_middleware(o.get("task_middleware")),
        )
        self.worker_middleware = middleware.worker_middleware(o.get("worker_middleware"))
        self._chains: dict[str, tuple[middleware.TaskMiddleware, ...]] = {}
        self.rescue_stalled = o.get("rescue_stalled", True)
        self.periodic_tasks = o.get("periodic_tasks", True) and self.wait
        self.periodic_catch_up = float(
            o.get("periodic_catch_up", periodic.DEFAULT_CATCH_UP_SECONDS)
        )
        retention = o.get("retention")
        if retention is not None and retention <= 0:
            raise ValueError("retention must be a positive number of seconds (or None: keep all)")
        self.retention = None if retention is None else float(retention)
        self.info = WorkerInfo(
            id=self.id,
            name=self.name,
            hostname=self.hostname,
            pid=self.pid,
            queues=self.queues,
            concurrency=self.concurrency,
        )
        self.store: WorkerStore = store or PostgresStore(
            app.connector, name=f"tracedjobs-worker-{self.id[:8]}"
        )
        self.jobs_processed = 0
        self.heartbeat = Heartbeat(self)  # made anew at registration

        self._threads = TaskThreads()
        self._running: dict[int, Execution] = {}
        self._abandoned: set[Execution] = set()
        self._busy = 0  # slots taken: jobs running, and sync threads abandoned past a timeout
        self._pending: list[_Submitted] = []
        # Prefetched: claimed jobs waiting for a slot (rows, and when each arrived).
        self._ready: deque[tuple[dict[str, Any], float]] = deque()
        self._abort_early: set[int] = set()  # prefetched jobs to end aborted, unstarted
        self._verified_at = 0.0  # when the database last said the prefetched jobs were ours
        self._verifying = False
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per job in flight
        self._exchanges: set[asyncio.Task[None]] = set()
        # Smaller batches cost more per job in the database: split only large ones.
        self._max_exchanges = MAX_EXCHANGES if self.concurrency >= SPLIT_FROM else 1
        self._reserved = 0  # slots the claims in flight may fill
        self._claiming = 0  # exchanges in flight that claim
        self._backlog = False  # the last claim filled every slot it asked for
        self._idle = False  # the last claim left no job ready; claim again once poked
        self._heard = False  # LISTEN on a session of its own: every new job is announced
        self._pokes = 0
        self._failing = False  # an exchange failed and backs off
        self._next_at: float | None = None  # loop time at which a scheduled job is due
        self._side: TaskGroup | None = None
        self._signals_seen = 0
        self._owner_thread: int | None = None
        self._portal_loop: Any = None

    # -- public ------------------------------------------------------------------------

    @property
    def log_context(self) -> dict[str, Any]:
        return {"name": self.name, "worker_id": self.id, "queues": list(self.queues or [])}

    def stop(self) -> None:
        """Stop fetching; running jobs finish (see ``shutdown_graceful_timeout``), then
        ``run()`` returns. Safe to call from any thread."""
        if self._portal_loop is not None and threading.get_ident() != self._owner_thread:
            self._portal_loop.call_soon_threadsafe(self.stop)
            return
        if self._stopping:
            return
        self._stopping = True
        logger.info(
            "worker %s: stop requested",
            self.name,
            extra={"action": "stopping_worker", "worker": self.log_context},
        )
        if self.shutdown_graceful_timeout is not None and self._side is not None:
            self._side.start_soon(self._graceful_deadline, float(self.shutdown_graceful_timeout))
        self._poke()

    async def run(self) -> None:
        """Run until stopped (or, with ``wait=False``, until no job is ready).

        Cancelling the task that runs this stops the worker as ``stop()`` does — running
        jobs get ``shutdown_graceful_timeout`` to finish, then are aborted and recorded —
        and the cancellation is raised once that is done (as in Procrastinate).
        """
        self._owner_thread = threading.get_ident()
        self._portal_loop = asyncio.get_running_loop()
        finished = anyio.Event()
        failure: list[BaseException] = []

        async def body() -> None:
            with anyio.CancelScope(shield=True):
                try:
                    await self._run()
                except BaseException as exc:  # re-raised below, outside the task group
                    failure.append(exc)
                finally:
                    finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(body)
            try:
                await finished.wait()
            except anyio.get_cancelled_exc_class():
                self.stop()
                with anyio.CancelScope(shield=True):
                    await finished.wait()
                raise
        if failure:
            raise failure[0]

    # -- lifecycle -----------------------------------------------------------------------

    async def _run(self) -> None:
        # Signals are handled from before the pool opens until the worker has unregistered:
        # a SIGTERM while it starts (or a second one while it cleans up) no longer meets the
        # process's default action, which killed it with its worker row left behind.
        with self._signal_receiver() as signals:
            listener = None
            if signals is not None:
                listener = asyncio.create_task(self._signal_loop(signals))
            try:
                await self._run_started()
            finally:
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listener

    def _signal_receiver(self) -> contextlib.AbstractContextManager[AsyncIterator[int] | None]:
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            return anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        return contextlib.nullcontext()

    async def _run_started(self) -> None:
        await self.store.open()
        try:
            await self.store.register(self.info)
            self.heartbeat = Heartbeat(self)
            logger.info(
                "worker %s started: queues=%s concurrency=%d database=%s",
                self.name,
                ",".join(self.queues) if self.queues else "all",
                self.concurrency,
                self.app.connector.safe_url,
                extra={"action": "start_worker", "worker": self.log_context},
            )
            async with anyio.create_task_group() as side:
                self._side = side
                self._start_side_loops(side)
                try:
                    await self._fetch_loop()
                finally:
                    side.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._unregister()
                self._report_abandoned()
                self._threads.close()
                with anyio.move_on_after(10):
                    await self.store.close()
        logger.info(
            "worker %s stopped after %d jobs",
            self.name,
            self.jobs_processed,
            extra={"action": "stop_worker", "worker": self.log_context},
        )

    def _start_side_loops(self, side: TaskGroup) -> None:
        every, forever = supervisor.every, supervisor.forever
        # After an outage the heartbeat retries at least every interval, so that peers
        # see it back well within the stalled timeout.
        side.start_soon(
            functools.partial(
                every,
                "heartbeat",
                self.update_heartbeat_interval,
                self.heartbeat.beat,
                max_backoff=self.update_heartbeat_interval,
            )
        )
        if self.rescue_stalled or self.wait:
            side.start_soon(
                functools.partial(
                    every,
                    "stalled-job rescue",
                    self.update_heartbeat_interval,
                    functools.partial(rescue, self),
                    first=0.0,
                )
            )
        if self.listen_notify:
            side.start_soon(forever, "LISTEN", self._listen)
        side.start_soon(every, "abort poll", self.abort_polling_interval, self._poll_aborts)
        side.start_soon(gauges.export_loop, self)
        if self.periodic_tasks and self.app.periodic_registry.tasks:
            deferrer = periodic.Deferrer(
                self.store, self.app.periodic_registry, self.periodic_catch_up
            )
            side.start_soon(
                functools.partial(
                    every, "periodic deferral", deferrer.next_in, deferrer.step, first=0.0
                )
            )

    async def _unregister(self) -> None:
        try:
            with anyio.fail_after(10):
                await self.store.unregister(self.id)
        except (Exception, TimeoutError) as exc:
            logger.warning(
                "could not delete the worker row (%s); peers will prune it after %.0f s",
                first_line(exc),
                self.stalled_worker_timeout,
            )

    def _report_abandoned(self) -> None:
        stuck = [e for e in self._abandoned if not e.thread_done]
        if stuck:
            logger.warning(
                "worker %s: %d sync task thread(s) abandoned past a timeout or abort are still "
                "running (jobs %s); they are daemon threads and end with the process",
                self.name,
                len(stuck),
                ", ".join(str(e.job.id) for e in stuck),
                extra={"action": "abandoned_threads", "worker": self.log_context},
            )

    # -- the fetch loop ----------------------------------------------------------------

    def _poke(self) -> None:
        """Work may be ready (announced, or a failure to recover from): the fetch loop looks
        again, claiming too if slots are free."""
        self._idle = False
        self._pokes += 1
        self._wake_up()

    def _wake_up(self) -> None:
        """Something changed (a result to hand in, an exchange or a job ended): the fetch loop
        looks again, claiming only if a job may be ready."""
        if self._wake is not None:
            self._wake.set()

    async def _fetch_loop(self) -> None:
        """Hand in finished attempts and claim jobs for free slots, in exchanges (one
        transaction each). With a backlog, two exchanges run at once, each claiming half the
        slots: the database works on one while this process runs the jobs of the other."""
        health = supervisor.Health("job fetch")
        while True:
            if self._stopping and not self._busy_anywhere():
                return
            wake = self._wake = asyncio.Event()
            if self._stopping and self._ready:
                self._start_release(health)
                continue
            claim = self._claim_limit()
            if self._may_exchange(claim):
                self._start_exchange(claim, health)
                continue
            # One-shot: done once a claim with free slots found nothing (slots held by
            # threads abandoned past a timeout do not count as "nothing ready").
            if not self.wait and self._idle and not self._busy_anywhere():
                return
            timeout = None
            if self._idle and self.wait and not self._exchanges and not self._stopping:
                timeout = self._idle_timeout()
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                self._idle = False  # poll

    def _busy_anywhere(self) -> bool:
        return bool(self._tasks or self._pending or self._exchanges or self._ready)

    def _claim_limit(self) -> int:
        if self._stopping or (self._idle and self._heard and self.wait):
            # No job is ready, and a notification will say when one is: results are handed
            # in without a claim, and the slots stay free for the claim that notification
            # starts (beside them, see _may_exchange). Unheard, every exchange claims; so
            # does a one-shot worker's, which stops once a claim finds nothing: a job that a
            # task deferred must be claimed by then, not merely announced.
            return 0
        free = self.concurrency + self.prefetch - self._busy - len(self._ready) - self._reserved
        if self._max_exchanges > 1 and (self._backlog or self._exchanges):
            free = min(free, -(-self.concurrency // self._max_exchanges))
        return max(free, 0)

    def _may_exchange(self, claim: int) -> bool:
        if self._failing:
            return False
        claims = claim > 0 and not self._idle
        if self._exchanges:
            if len(self._exchanges) >= MAX_EXCHANGES:
                return False
            if not self._claiming:
                # Those in flight only hand in results: a claim goes beside them, so that a
                # job announced while results are written starts at once.
                return claims
            if not self._backlog or len(self._exchanges) >= self._max_exchanges:
                return False  # a second claim at once only while a backlog lasts
        return bool(self._pending) or claims

    def _start_exchange(self, claim: int, health: supervisor.Health) -> None:
        submitted, self._pending = self._pending, []
        self._reserved += claim
        self._claiming += claim > 0
        self._start_tracked(self._exchange_task(submitted, claim, health))

    def _start_tracked(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a database round trip of the fetch loop's (an exchange, a hand-back, a check
        of prefetched claims) in a task the loop waits for before it returns."""
        task = asyncio.get_running_loop().create_task(coro)
        self._exchanges.add(task)
        task.add_done_callback(self._exchange_done)

    def _exchange_done(self, task: asyncio.Task[None]) -> None:
        self._exchanges.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error in the fetch loop", exc_info=task.exception())
        self._wake_up()  # not _poke: an exchange that found nothing leaves us idle

    async def _exchange_task(
        self, submitted: list[_Submitted], claim: int, health: supervisor.Health
    ) -> None:
        pokes = self._pokes
        failure: Exception | None = None
        try:
            batch = await self._exchange(submitted, claim)
        except Exception as exc:
            failure = exc
        finally:
            # The slots this exchange was to claim for are free again, claimed or not.
            self._reserved -= claim
            self._claiming -= claim > 0
        if failure is not None:
            self._pending = [s for s in submitted if not s.done.done()] + self._pending
            self._failing = True
            try:
                await asyncio.sleep(health.failed(failure))
            finally:
                self._failing = False
            return
        health.ok()
        # After _exchange settled the results: the attempts they end finish (span, log
        # line) before the jobs claimed here start, among them maybe their own retries or
        # the next jobs under their locks; starting those first would show, in traces and
        # logs, two attempts of a job, or two jobs under one lock, running at once.
        for row in batch.claimed:
            self._admit(row)
        if claim > 0:
            self._backlog = len(batch.claimed) == claim
            # Idle unless poked meanwhile (a notification this claim may not have seen).
            self._idle = not batch.more and self._pokes == pokes
            loop = asyncio.get_running_loop()
            self._next_at = None if batch.next_in is None else loop.time() + batch.next_in
        elif any(s.frees for s in submitted):
            # A retry due now, or a job that waited on a released lock: claim at once
            # rather than wait for the notification that says so.
            self._poke()

    def _admit(self, row: dict[str, Any]) -> None:
        """Start a claimed job if a slot is free, else keep it for the next slot (prefetch).
        While stopping, kept jobs are handed back (see _start_release)."""
        if self._busy < self.concurrency and not self._ready and self._claims_safe():
            self._spawn(row)
        else:
            self._ready.append((row, time.monotonic()))
            self._start_ready()

    def _start_ready(self) -> None:
        """A slot is free: start the next prefetched job, its wait in this process added to
        its queue wait."""
        if not self._ready or self._stopping or self._busy >= self.concurrency:
            return
        if not self._claims_safe():
            self._start_verify()
            return
        while self._ready and self._busy < self.concurrency:
            row, since = self._ready.popleft()
            row["queue_wait"] = (row.get("queue_wait") or 0.0) + time.monotonic() - since
            self._spawn(row)

    def _claims_safe(self) -> bool:
        """Whether no peer can have rescued this worker's claims since they were made: a
        heartbeat (or a check of the claims) went through well within the stalled timeout.
        After a pause or an outage longer than that, a peer may have declared this worker
        dead and re-run its jobs; a job kept waiting here must then be checked, not started
        blind (a job already running cannot be stopped: its late result is discarded)."""
        since = max(self.heartbeat.ok_at, self._verified_at)
        return time.monotonic() - since < self.stalled_worker_timeout * SAFE_FRACTION

    def _start_verify(self) -> None:
        if self._verifying:
            return
        self._verifying = True
        self._start_tracked(self._verify_task())

    async def _verify_task(self) -> None:
        """Keep the prefetched jobs still claimed by this worker; forget those a peer
        rescued (it recorded their attempt lost and re-ran or failed them)."""
        health = supervisor.Health("prefetch check")
        try:
            while self._ready and not self._stopping:
                sent = time.monotonic()
                jobs = [(row["id"], row["attempt_id"]) for row, _ in self._ready]
                try:
                    mine = await self.store.claimed_by(jobs, worker_id=self.id)
                except Exception as exc:
                    await asyncio.sleep(health.failed(exc))
                    continue
                health.ok()
                self._verified_at = sent
                checked = {job_id for job_id, _ in jobs}
                lost = [r for r, _ in self._ready if r["id"] in checked and r["id"] not in mine]
                gone = {r["id"] for r in lost}
                self._ready = deque(item for item in self._ready if item[0]["id"] not in gone)
                self._forget_rescued(lost)
                break
        finally:
            self._verifying = False
        self._start_ready()

    def _start_release(self, health: supervisor.Health) -> None:
        rows = [row for row, _ in self._ready]
        self._ready.clear()
        self._start_tracked(self._release_task(rows, health))

    async def _release_task(self, rows: list[dict[str, Any]], health: supervisor.Health) -> None:
        """Hand prefetched jobs that never started back to the queue, for any worker to
        claim. A job whose abort was asked for meanwhile (no longer just `doing`) is not
        handed back: it ends `aborted` here, unstarted; one a peer rescued (this worker was
        paused) is left to the peer."""
        released = await self._ask_claims(self.store.release_jobs, rows, health)
        if released is None:
            return
        if released:
            logger.info(
                "worker %s: handed %d prefetched job(s) back to the queue",
                self.name,
                len(released),
                extra={"action": "release_jobs", "worker": self.log_context},
            )
        kept = [row for row in rows if row["id"] not in released]
        if kept:
            # Asked to abort meanwhile (ended here, unstarted), or rescued by a peer.
            mine = await self._ask_claims(self.store.claimed_by, kept, health)
            if mine is None:
                return
            self._forget_rescued([row for row in kept if row["id"] not in mine])
            for row in kept:
                if row["id"] in mine:
                    self._abort_early.add(row["id"])
                    self._spawn(row)

    async def _ask_claims(
        self, ask: Any, rows: list[dict[str, Any]], health: supervisor.Health
    ) -> set[int] | None:
        """``ask`` (a store method) about these prefetched jobs' claims; if the database
        fails, back off and keep the jobs here for the fetch loop to try again (None)."""
        try:
            answer: set[int] = await ask(
                [(row["id"], row["attempt_id"]) for row in rows], worker_id=self.id
            )
        except Exception as exc:
            await asyncio.sleep(health.failed(exc))
            self._ready.extend((row, time.monotonic()) for row in rows)
            return None
        health.ok()
        return answer

    def _forget_rescued(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            logger.warning(
                "worker %s: %d prefetched job(s) were rescued by a peer while this worker was "
                "paused or out of reach; not starting them here (ids %s)",
                self.name,
                len(rows),
                ", ".join(str(row["id"]) for row in rows),
                extra={"action": "prefetched_rescued", "worker": self.log_context},
            )

    def _spawn(self, row: dict[str, Any]) -> None:
        """Run one claimed job in a task of its own (plain asyncio: a job never needs the
        cancellation of a task group, and this is the hot path)."""
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._run_job(row))
        self._tasks.add(task)
        task.add_done_callback(self._job_task_done)

    def _job_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error while running a job", exc_info=task.exception())
            self._poke()
        else:
            # Not a poke: the job's slot was freed before its result was handed in, and the
            # exchange that recorded it claimed for that slot (or knew none was ready).
            # Claiming again would cost an empty round trip per job, and a job announced
            # meanwhile would wait behind it. The loop wakes only to check whether it is
            # done (stopping, one-shot).
            self._wake_up()

    def _idle_timeout(self) -> float:
        """With nothing to claim: until the next scheduled job, at most the polling interval
        (a fallback for missed notifications)."""
        poll = self.polling_interval if self.listen_notify else min(self.polling_interval, 1.0)
        if self._next_at is not None:
            next_in = self._next_at - asyncio.get_running_loop().time()
            return max(0.0, min(poll, next_in + 0.001))
        return poll

    async def _exchange(self, submitted: list[_Submitted], free: int) -> Batch:
        """Write the finished attempts and claim up to ``free`` jobs; settles each item whose
        fate is known (also when it raises)."""
        results = [s.result for s in submitted]
        try:
            batch = await self.store.finish_and_claim(
                results, worker=self.info, limit=free, delete_statuses=self.delete_statuses
            )
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if not results:
                raise
            # One result the database refuses must not hold back the others: write them one
            # at a time, and fail the refused ones with a clear error.
            logger.warning(
                "the database refused a batch of %d result(s) (%s); recording them one by one",
                len(results),
                first_line(exc),
                extra={"action": "batch_refused", "worker": self.log_context},
            )
            for item in submitted:
                await self._record_alone(item)
            batch = await self.store.finish_and_claim([], worker=self.info, limit=free)
            return batch
        for item in submitted:
            item.settle(item.result.job_id in batch.recorded)
        return batch

    async def _record_alone(self, item: _Submitted) -> None:
        try:
            batch = await self.store.finish_and_claim(
                [item.result], worker=self.info, limit=0, delete_statuses=self.delete_statuses
            )
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            result = item.result
            message = (
                f"the database refused this attempt's result ({first_line(exc)}); the job was "
                f"failed instead of ending {result.outcome}"
            ).replace("\x00", "\\x00")
            logger.error("job %s: %s", result.job_id, message, extra={"action": "result_refused"})
            recorded = await self.store.fail_unrecordable(result, message)
            item.result = AttemptResult(
                job_id=result.job_id,
                attempt_id=result.attempt_id,
                status=Status.FAILED,
                outcome=Outcome.FAILED,
                event="failed",
                duration=result.duration,
                error_type="tracedjobs.ResultRefused",
                error_message=message,
                trace_id=result.trace_id,
                span_id=result.span_id,
            )
            item.settle(recorded)
            return
        item.settle(item.result.job_id in batch.recorded)

    # -- running one job ---------------------------------------------------------------

    async def _run_job(self, row: dict[str, Any]) -> None:
        try:
            row["args"] = self.app.connector.json_loads(row.pop("args_text"))
            job = Job.from_row(row)
        except Exception as exc:  # a row this worker cannot read: fail it, go on
            logger.error("job %s: unreadable row (%s)", row.get("id"), first_line(exc))
            job = Job(
                id=row["id"],
                task_name=str(row.get("task_name")),
                queue_name=str(row.get("queue_name")),
                args={},
                attempt_id=row.get("attempt_id"),
            )
            await self._finish(job, None, Ended(exc, 0.0), None, row.get("queue_wait"))
            return
        task = self.app.tasks.get(job.task_name)
        execution = None
        if job.id in self._abort_early:
            self._abort_early.discard(job.id)
            ended = Ended(JobAborted(f"job {job.id} was aborted before it started"), 0.0)
        elif task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            ended = Ended(
                TaskNotFound(
                    f"no task named {job.task_name!r} is registered in this worker's app "
                    f"(known: {known})"
                ),
                0.0,
            )
        elif not isinstance(job.args, dict):
            ended = Ended(
                TypeError(
                    f"job {job.id}: its args are not a JSON object ({type(job.args).__name__})"
                ),
                0.0,
            )
        else:
            context = JobContext(
                app=self.app,
                job=job,
                task=task,
                worker_name=self.name,
                worker_id=self.id,
                worker_queues=self.queues,
                additional_context=dict(self.additional_context),
            )
            chain = self._chains.get(task.name)
            if chain is None:
                chain = self._chains[task.name] = middleware.chain_for(
                    self.task_middleware, task.task_middleware, task.is_async
                )
            execution = Execution(
                job, task, context, self._threads, chain, self.worker_middleware, self
            )
            ended = None
        await self._finish(job, execution, ended, task, row.get("queue_wait"))

    async def _finish(
        self,
        job: Job,
        execution: Execution | None,
        ended: Ended | None,
        task: Any,
        queue_wait: float | None,
    ) -> None:
        """Run the execution (if any) in its span, then record the result."""
        with telemetry.process_span(
            job,
            worker_name=self.name,
            trace_parent=self.app.trace_parent,
            record_args=self.app.record_args,
        ) as span:
            telemetry.record_queue_wait(job.queue_name, job.task_name, queue_wait or 0.0, span)
            if execution is not None:
                execution.context.trace_id, execution.context.span_id = span.trace_id, span.span_id
                self._running[job.id] = execution
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "job %s (%s) attempt %d started",
                        job.id,
                        job.task_name,
                        job.attempt_number,
                        extra=outcomes.log_extra("start_job", job, self.log_context),
                    )
                try:
                    with telemetry.job_log_context(job, span):
                        ended = await execution.run()
                finally:
                    self._running.pop(job.id, None)
            assert ended is not None
            result = outcomes.attempt_result(
                job,
                task,
                ended,
                aborted_by=execution.aborted_by if execution else None,
                trace_id=span.trace_id,
                span_id=span.span_id,
            )
            self._release(execution, ended)
            submitted = _Submitted(result, job.lock is not None or result.status == Status.TODO)
            self._pending.append(submitted)
            self._wake_up()
            await submitted.done
            result = submitted.result
            outcomes.log_result(
                job,
                result,
                recorded=submitted.recorded,
                duration=ended.duration,
                worker=self.log_context,
            )
            if submitted.recorded:
                span.finish(str(result.outcome), ended.exception, result.error_type)
                telemetry.record_attempt(
                    queue=job.queue_name,
                    task_name=job.task_name,
                    outcome=str(result.outcome),
                    duration=ended.duration,
                    error_type=result.error_type,
                    span=span,
                )
            else:
                span.finish_discarded()
        self.jobs_processed += 1

    def _release(self, execution: Execution | None, ended: Ended) -> None:
        """Free the job's slot — unless its sync thread runs on past a timeout or abort:
        then the slot is freed when that thread returns."""
        if execution is None or not ended.thread_abandoned or execution.thread_done:
            self._busy -= 1
            self._start_ready()
            return
        self._abandoned.add(execution)

        def returned() -> None:
            self._abandoned.discard(execution)
            self._busy -= 1
            self._start_ready()
            self._poke()

        execution.on_thread_done = returned

    # -- aborts ------------------------------------------------------------------------

    def _abort(self, job_id: int) -> None:
        execution = self._running.get(job_id)
        if execution is None:
            self._abort_prefetched(job_id)
            return
        if execution.aborted_by is not None:
            return
        logger.info(
            "job %s: abort requested",
            job_id,
            extra=outcomes.log_extra(
                "abort_job", execution.job, self.log_context, reason="request"
            ),
        )
        execution.abort(AbortReason.USER_REQUEST)

    def _abort_prefetched(self, job_id: int) -> None:
        """A prefetched job's abort: it ends `aborted` at once, without running (and
        without waiting for a slot: it takes none but for a moment)."""
        for i, (row, _) in enumerate(self._ready):
            if row["id"] == job_id:
                del self._ready[i]
                logger.info(
                    "job %s: abort requested before it started",
                    job_id,
                    extra={"action": "abort_job", "worker": self.log_context},
                )
                self._abort_early.add(job_id)
                self._spawn(row)
                return

    async def _poll_aborts(self) -> None:
        """A fallback for missed abort notifications."""
        if self._running or self._ready:
            for job_id in await self.store.aborting_job_ids(self.id):
                self._abort(job_id)

    async def _graceful_deadline(self, timeout: float) -> None:
        await anyio.sleep(timeout)
        if not self._running:
            return
        logger.warning(
            "worker %s: %d job(s) still running after the graceful timeout of %.1f s; "
            "aborting them",
            self.name,
            len(self._running),
            timeout,
            extra={"action": "stop_worker", "worker": self.log_context},
        )
        for execution in list(self._running.values()):
            execution.abort(AbortReason.SHUTDOWN)
        await anyio.sleep(SYNC_ABORT_GRACE)
        for execution in list(self._running.values()):
            execution.abandon()

    # -- LISTEN/NOTIFY -----------------------------------------------------------------

    async def _listen(self, health: supervisor.Health) -> None:
        async with self.store.listen() as notifications:
            health.ok()
            # Through a transaction pooler the notifications are lost (docs/operations.md).
            self._heard = not self.app.connector.session_through_pooler
            self._poke()  # anything deferred while we were not listening
            try:
                async for notify in notifications:
                    if notify.channel == ABORT_CHANNEL:
                        try:
                            self._abort(int(notify.payload))
                        except ValueError:
                            logger.warning(
                                "ignored a malformed abort notification %r", notify.payload
                            )
                    elif self.queues is None or notify.payload in self.queues:
                        self._poke()
            finally:
                self._heard = False

    # -- signals -----------------------------------------------------------------------

    async def _signal_loop(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            self._signals_seen += 1
            if self._signals_seen == 1:
                logger.warning(
                    "received %s: stopping, waiting for %d running job(s) to finish "
                    "(send %s again to exit at once)",
                    name,
                    len(self._running),
                    name,
                )
                self.stop()
            else:
                self._exit_now(name)

    def _exit_now(self, reason: str) -> None:
        logger.warning(
            "%s: exiting at once; %d job(s) left in doing will be rescued after %.0f s",
            reason,
            len(self._running) + len(self._ready),  # prefetched ones are `doing` too
            self.stalled_worker_timeout,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
