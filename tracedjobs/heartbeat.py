"""Worker liveness: heartbeats, and the rescue of jobs whose worker died (seeds 000/004)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tracedjobs import retry
from tracedjobs.exceptions import JobLost
from tracedjobs.jobs import AttemptResult, Job, Outcome, Status

if TYPE_CHECKING:
    from tracedjobs.app import App

logger = logging.getLogger(__name__)

LOST_ERROR_TYPE = "WorkerLost"


def decide_lost(app: App, job: Job) -> AttemptResult:
    """What happens to a job whose worker died mid-attempt.

    Its attempt is recorded ``lost``. Then: a job being aborted ends ``aborted``; a task
    declared ``on_lost="fail"`` fails; otherwise its retry strategy decides (a lost
    attempt counts as an attempt), and with no retry left it fails.
    """
    message = "the worker running this attempt stopped heartbeating"
    base: dict[str, Any] = {
        "job_id": job.id,
        "attempt_id": job.attempt_id or 0,
        "outcome": Outcome.LOST,
        "error_type": LOST_ERROR_TYPE,
    }
    if job.status == Status.ABORTING:
        return AttemptResult(status=Status.ABORTED, event="aborted", error_message=message, **base)
    task = app.tasks.get(job.task_name)
    if task is None:
        return AttemptResult(
            status=Status.FAILED,
            event="failed",
            error_message=(
                f"{message}; task {job.task_name!r} is not registered in the rescuing worker, "
                f"so its retry strategy is unknown: retry with `tracedjobs jobs retry {job.id}`"
            ),
            **base,
        )
    if task.on_lost == "fail":
        return AttemptResult(
            status=Status.FAILED,
            event="failed",
            error_message=f"{message}; the task declares on_lost='fail'",
            **base,
        )
    try:
        decision = retry.decide(task.retry_strategy, JobLost(message), job)
    except Exception:
        logger.exception("retry strategy of task %s raised; not retrying", job.task_name)
        decision = None
    if decision is None:
        return AttemptResult(
            status=Status.FAILED,
            event="failed",
            error_message=f"{message}; no retry left",
            **base,
        )
    return AttemptResult(
        status=Status.TODO,
        event="deferred_for_retry",
        error_message=message,
        retry_in=decision.delay_seconds,
        retry_at=decision.retry_at,
        priority=decision.priority,
        queue=decision.queue,
        lock=decision.lock,
        **base,
    )
