"""What the end of an attempt means for its job: the result to write, and the log line.

Nothing here may raise because of what a task did: an exception whose ``__str__`` raises,
a retry strategy that raises or returns values the database would refuse — each becomes a
clear ``failed`` result instead of a stuck worker.
"""

from __future__ import annotations

import datetime
import logging
import math
import traceback
from typing import TYPE_CHECKING, Any

from tracedjobs import retry, telemetry
from tracedjobs.context import AbortReason
from tracedjobs.exceptions import DeferJob, JobAborted, TaskNotFound
from tracedjobs.jobs import AttemptResult, Job, Outcome, Status

if TYPE_CHECKING:
    from tracedjobs.execution import Ended
    from tracedjobs.tasks import Task

logger = logging.getLogger("tracedjobs.worker")

MAX_ERROR_MESSAGE = 4000
MAX_TRACEBACK = 32000
_INT4 = 2**31 - 1


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when its ``__str__`` raises; no NUL bytes (PostgreSQL
    text cannot hold them)."""
    try:
        text = str(value)
    except BaseException as exc:
        text = f"<{type(value).__name__}: str() raised {type(exc).__name__}>"
    return text.replace("\x00", "\\x00")


def safe_traceback(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:
        frames = "".join(traceback.format_tb(exc.__traceback__))
        text = (
            f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {safe_str(exc)}\n"
        )
    return text.replace("\x00", "\\x00")[-MAX_TRACEBACK:]


def attempt_result(
    job: Job,
    task: Task[Any, Any] | None,
    ended: Ended,
    *,
    aborted_by: AbortReason | None,
    trace_id: str | None,
    span_id: str | None,
) -> AttemptResult:
    """The result of one attempt, from how its function ended."""
    base: dict[str, Any] = {
        "job_id": job.id,
        "attempt_id": job.attempt_id or 0,
        "duration": ended.duration,
        "trace_id": trace_id,
        "span_id": span_id,
    }
    exception = ended.exception
    if exception is None:
        return AttemptResult(
            status=Status.SUCCEEDED, outcome=Outcome.SUCCEEDED, event="succeeded", **base
        )
    if isinstance(exception, DeferJob) and _finite(exception.delay):
        return AttemptResult(
            status=Status.TODO,
            outcome=Outcome.DEFERRED,
            event="rescheduled",
            increment_attempts=exception.increment_attempts,
            retry_in=max(exception.delay, 0.0),
            **base,
        )
    base.update(
        error_type=telemetry.error_type_of(exception),
        error_message=safe_str(exception)[:MAX_ERROR_MESSAGE],
        traceback=safe_traceback(exception),
    )
    if isinstance(exception, JobAborted) and aborted_by in (AbortReason.USER_REQUEST, None):
        return AttemptResult(
            status=Status.ABORTED, outcome=Outcome.ABORTED, event="aborted", **base
        )
    if aborted_by is AbortReason.USER_REQUEST:
        # Asked to abort, it ended with another error: failed, and not retried — as in
        # Procrastinate: nobody wants a job they aborted to come back.
        return AttemptResult(status=Status.FAILED, outcome=Outcome.FAILED, event="failed", **base)
    decision, problem = _retry_decision(task, exception, job)
    if problem is not None:
        base["error_message"] = f"{base['error_message']} [not retried: {problem}]"[
            :MAX_ERROR_MESSAGE
        ]
    if decision is None:
        if aborted_by is AbortReason.SHUTDOWN:
            return AttemptResult(
                status=Status.ABORTED, outcome=Outcome.ABORTED, event="aborted", **base
            )
        return AttemptResult(status=Status.FAILED, outcome=Outcome.FAILED, event="failed", **base)
    return AttemptResult(
        status=Status.TODO,
        # A job aborted at shutdown and retried (as Procrastinate does) keeps "aborted".
        outcome=Outcome.ABORTED if aborted_by is AbortReason.SHUTDOWN else Outcome.RETRIED,
        event="deferred_for_retry",
        retry_in=decision.delay_seconds,
        retry_at=decision.retry_at,
        priority=decision.priority,
        queue=decision.queue,
        lock=decision.lock,
        **base,
    )


def _retry_decision(
    task: Task[Any, Any] | None, exception: BaseException, job: Job
) -> tuple[retry.RetryDecision | None, str | None]:
    """The task's retry decision, or (None, why not) when it cannot be used."""
    if task is None or isinstance(exception, TaskNotFound):
        return None, None
    try:
        decision = retry.decide(task.retry_strategy, exception, job)
    except Exception as exc:
        logger.exception("retry strategy of task %s raised; not retrying", job.task_name)
        return None, f"the retry strategy raised {type(exc).__name__}"
    if decision is None:
        return None, None
    problem = invalid_decision(decision)
    if problem is not None:
        logger.error("job %s (%s): %s; not retrying", job.id, job.task_name, problem)
        return None, problem
    return decision, None


def invalid_decision(decision: retry.RetryDecision) -> str | None:
    """Why the database would refuse this retry decision, or None if it is fine."""
    try:
        delay = decision.delay_seconds
    except (OverflowError, TypeError, ValueError) as exc:
        return f"retry delay is not valid ({exc})"
    if delay is not None and not (_finite(delay) and 0 <= delay < 10 * 365 * 86400):
        return f"retry delay {delay!r} s is not a valid number of seconds"
    if decision.retry_at is not None and not isinstance(decision.retry_at, datetime.datetime):
        return f"retry_at {decision.retry_at!r} is not a datetime"
    if decision.priority is not None and (
        not isinstance(decision.priority, int) or not -_INT4 - 1 <= decision.priority <= _INT4
    ):
        return f"retry priority {decision.priority!r} is out of range for a 32-bit integer"
    for name in ("queue", "lock"):
        value = getattr(decision, name)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            return f"retry {name} {value!r} is not a name (a non-empty string)"
        if "\x00" in value:
            return (
                f"retry {name} {value!r} contains a NUL byte (0x00), which PostgreSQL text "
                "cannot hold"
            )
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


# -- logging ----------------------------------------------------------------------------------


def log_extra(action: str, job: Job | None, worker: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Procrastinate-style ``extra`` fields: ``action``, ``worker``, ``job``."""
    extra: dict[str, Any] = {"action": action, "worker": worker, **more}
    if job is not None:
        extra["job"] = {
            "id": job.id,
            "task_name": job.task_name,
            "queue": job.queue_name,
            "lock": job.lock,
            "queueing_lock": job.queueing_lock,
            "attempt": job.attempt_number,
        }
    return extra


def log_result(
    job: Job, result: AttemptResult, *, recorded: bool, duration: float, worker: dict[str, Any]
) -> None:
    """One line per finished attempt, at a level matching what happened."""
    attempt = job.attempt_number
    if not recorded:
        logger.warning(
            "job %s (%s) attempt %d finished (%s) after this worker was declared dead and the "
            "attempt was recorded lost; this late result was discarded",
            job.id,
            job.task_name,
            attempt,
            result.outcome,
            extra=log_extra("job_result_discarded", job, worker, outcome=str(result.outcome)),
        )
        return
    outcome = result.outcome
    extra = log_extra(
        _ACTIONS[(outcome, result.status)], job, worker, outcome=str(outcome), duration=duration
    )
    if outcome == Outcome.SUCCEEDED:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s) attempt %d succeeded in %.3f s",
                job.id,
                job.task_name,
                attempt,
                duration,
                extra=extra,
            )
        return
    if outcome == Outcome.DEFERRED:
        logger.info(
            "job %s (%s) attempt %d deferred itself after %.3f s; runs again in %.1f s",
            job.id,
            job.task_name,
            attempt,
            duration,
            result.retry_in or 0.0,
            extra=extra,
        )
        return
    what = f"{result.error_type}: {result.error_message}"
    if result.status == Status.TODO:
        logger.warning(
            "job %s (%s) attempt %d %s after %.3f s (%s); retry %s",
            job.id,
            job.task_name,
            attempt,
            "aborted" if outcome == Outcome.ABORTED else "failed",
            duration,
            what,
            _when(result),
            extra=extra,
        )
    elif outcome == Outcome.ABORTED:
        logger.warning(
            "job %s (%s) attempt %d aborted after %.3f s",
            job.id,
            job.task_name,
            attempt,
            duration,
            extra=extra,
        )
    else:
        logger.error(
            "job %s (%s) attempt %d failed after %.3f s (%s); not retried",
            job.id,
            job.task_name,
            attempt,
            duration,
            what,
            extra=extra,
        )


def _when(result: AttemptResult) -> str:
    if result.retry_at is not None:
        return f"at {result.retry_at.isoformat(timespec='seconds')}"
    return f"in {result.retry_in or 0.0:.1f} s"


# Procrastinate's action names where it has one.
_ACTIONS = {
    (Outcome.SUCCEEDED, Status.SUCCEEDED): "job_success",
    (Outcome.FAILED, Status.FAILED): "job_error",
    (Outcome.RETRIED, Status.TODO): "job_error_retry",
    (Outcome.ABORTED, Status.ABORTED): "job_aborted",
    (Outcome.ABORTED, Status.TODO): "job_aborted_retry",
    (Outcome.DEFERRED, Status.TODO): "job_deferred",
}
