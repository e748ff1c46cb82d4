"""Worker liveness: heartbeats, and the rescue of jobs whose worker died (seeds 000/004).

A worker bumps its row every ``update_heartbeat_interval`` on a connection of its own.
Peers that see a heartbeat older than ``stalled_worker_timeout`` (one SQL function,
``tracedjobs_heartbeat_cutoff``, decides) rescue that worker's jobs: its running attempts
are recorded ``lost`` and each job is re-run or failed as :func:`decide_lost` says.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from tracedjobs import telemetry
from tracedjobs.jobs import AttemptResult, Job, Outcome, Status

if TYPE_CHECKING:
    from tracedjobs.app import App
    from tracedjobs.worker import Worker

logger = logging.getLogger("tracedjobs.worker")

LOST_ERROR_TYPE = "WorkerLost"
# A job whose worker dies this many times ends failed: it may be what kills its workers.
MAX_LOST_ATTEMPTS = 3


def decide_lost(app: App, job: Job) -> AttemptResult:
    """What happens to a job whose worker died mid-attempt.

    Its attempt is recorded ``lost``. A lost attempt is the worker's failure, not the
    task's: it does not spend the retry budget. Then: a job being aborted ends
    ``aborted``; a task declared ``on_lost="fail"`` fails; a job lost
    ``MAX_LOST_ATTEMPTS`` times fails; otherwise it runs again at once.
    """
    message = "the worker running this attempt stopped heartbeating"
    base: dict[str, Any] = {
        "job_id": job.id,
        "attempt_id": job.attempt_id or 0,
        "outcome": Outcome.LOST,
        "error_type": LOST_ERROR_TYPE,
        "increment_attempts": False,
    }

    def failed(reason: str) -> AttemptResult:
        return AttemptResult(
            status=Status.FAILED, event="failed", error_message=f"{message}; {reason}", **base
        )

    if job.status == Status.ABORTING:
        return AttemptResult(status=Status.ABORTED, event="aborted", error_message=message, **base)
    task = app.tasks.get(job.task_name)
    if task is None:
        return failed(
            f"task {job.task_name!r} is not registered in the rescuing worker, so whether it "
            f"may run twice is unknown: retry with `tracedjobs jobs retry {job.id}`"
        )
    if task.on_lost == "fail":
        return failed("the task declares on_lost='fail'")
    lost = job.lost_attempts + 1
    if lost >= MAX_LOST_ATTEMPTS:
        return failed(
            f"lost {lost} times (the limit is {MAX_LOST_ATTEMPTS}): the job may be what "
            "kills its workers"
        )
    return AttemptResult(
        status=Status.TODO, event="deferred_for_retry", error_message=message, retry_in=0.0, **base
    )


class Heartbeat:
    """The heartbeat side loop of one worker.

    It also knows how long this worker's own heartbeats have been going through: across an
    outage every worker's heartbeat goes stale at once, so a worker that has just reached
    the database again cannot tell a dead peer from one still reconnecting. It rescues
    nothing until its own heartbeats have succeeded for ``stalled_worker_timeout``.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._last = time.monotonic()
        self._steady_since = time.monotonic()  # registration counts as the first beat
        self._failing = False
        # When the last beat that found this worker's row was sent (registration counts):
        # until then, no peer can have rescued this worker's jobs.
        self.ok_at = time.monotonic()

    def steady_for(self) -> float:
        """Seconds since this worker's heartbeats last started succeeding (0 if failing)."""
        return 0.0 if self._failing else time.monotonic() - self._steady_since

    async def beat(self) -> None:
        try:
            await self._beat()
        except Exception:
            self._failing = True
            raise
        if self._failing:
            self._failing = False
            self._steady_since = time.monotonic()

    async def _beat(self) -> None:
        worker = self.worker
        now = time.monotonic()
        late = now - self._last - worker.update_heartbeat_interval
        self._last = now
        if late > worker.stalled_worker_timeout / 2:
            # A blocking call inside an async task blocks the event loop, heartbeats with it.
            logger.warning(
                "worker %s: heartbeat %.1f s late: the event loop was blocked (a blocking "
                "call in an async task?) or the process was paused; peers declare a worker "
                "dead after %.0f s without heartbeat and rescue its jobs",
                worker.name,
                late,
                worker.stalled_worker_timeout,
                extra={"action": "heartbeat_late"},
            )
        sent = time.monotonic()
        if await worker.store.heartbeat(worker.id):
            self.ok_at = sent
        else:
            logger.warning(
                "worker %s was declared dead by a peer (no heartbeat for %.0f s); registering "
                "again. Jobs it was running were rescued and their results will be discarded.",
                worker.name,
                worker.stalled_worker_timeout,
                extra={"action": "worker_declared_dead"},
            )
            await worker.store.register(worker.info)


PRUNE_BATCH = 5_000
PRUNE_BATCHES_PER_PASS = 20  # at most 100,000 jobs a pass: a backlog is worked off over passes


async def prune(worker: Worker, retention: float) -> int:
    """Delete jobs that ended well more than ``retention`` seconds ago, with their history,
    in batches (short transactions); returns how many."""
    deleted = 0
    for _ in range(PRUNE_BATCHES_PER_PASS):
        n = await worker.store.prune_finished(retention, PRUNE_BATCH)
        deleted += n
        if n < PRUNE_BATCH:
            break
    if deleted:
        logger.debug("pruned %d finished job(s) older than %.0f s", deleted, retention)
    return deleted


async def rescue(worker: Worker) -> None:
    """One pass of the maintenance loop: re-run or fail the jobs of dead workers (or just
    prune their rows when rescue is off), prune old periodic ticks, and, with a
    ``retention``, old finished jobs."""
    store = worker.store
    steady = worker.heartbeat.steady_for()
    if steady < worker.stalled_worker_timeout:
        logger.debug(
            "rescue skipped: this worker's own heartbeats have only gone through for %.1f s",
            steady,
        )
    elif worker.rescue_stalled:
        await _rescue_dead_workers(worker)
    else:
        await store.prune_dead_workers(worker.stalled_worker_timeout)
    await store.prune_periodic_ticks()
    if worker.retention is not None:
        await prune(worker, worker.retention)


async def _rescue_dead_workers(worker: Worker) -> None:
    rescued = await worker.store.rescue_dead_workers(
        worker.stalled_worker_timeout,
        lambda job: decide_lost(worker.app, job),
        exclude=worker.id,
    )
    for job, result in rescued:
        logger.warning(
            "job %s (%s) was lost by its worker; now %s",
            job.id,
            job.task_name,
            result.status,
            extra={"action": "job_lost", "job": {"id": job.id, "task_name": job.task_name}},
        )
        telemetry.record_attempt(
            queue=job.queue_name,
            task_name=job.task_name,
            outcome=str(Outcome.LOST),
            duration=None,
            error_type=result.error_type,
        )
