"""The job model: statuses, jobs, their events and attempts, as read from the database."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any


class Status(enum.StrEnum):
    """A job's status, as Procrastinate names them."""

    TODO = "todo"
    DOING = "doing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTING = "aborting"
    ABORTED = "aborted"

    def __str__(self) -> str:
        return self.value


FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ABORTED)


class Outcome(enum.StrEnum):
    """How one attempt ended (also the `tracedjobs.job.outcome` telemetry attribute)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Event:
    """One entry of a job's history."""

    id: int
    job_id: int
    type: str
    at: datetime.datetime
    detail: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One run of a job, finished or not."""

    id: int
    job_id: int
    attempt: int
    worker_id: str | None
    worker_name: str | None
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    outcome: str | None
    duration: float | None
    queue_wait: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    trace_id: str | None
    span_id: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Attempt:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            attempt=row["attempt"],
            worker_id=str(row["worker_id"]) if row["worker_id"] else None,
            worker_name=row["worker_name"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            outcome=row["outcome"],
            duration=row["duration"],
            queue_wait=row["queue_wait"],
            error_type=row["error_type"],
            error_message=row["error_message"],
            traceback=row["traceback"],
            trace_id=row["trace_id"],
            span_id=row["span_id"],
        )


@dataclasses.dataclass
class Job:
    """A job as stored: what to run, where it stands, and (when loaded) its history."""

    id: int
    task_name: str
    queue_name: str
    args: dict[str, Any]
    priority: int = 0
    lock: str | None = None
    queueing_lock: str | None = None
    status: Status = Status.TODO
    scheduled_at: datetime.datetime | None = None
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None
    # Attempts made before this one: 0 on the first run. Lost attempts (the worker died)
    # are not counted here: they do not spend the retry budget.
    attempts: int = 0
    lost_attempts: int = 0
    worker_id: str | None = None
    attempt_id: int | None = None
    started_at: datetime.datetime | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    events: list[Event] = dataclasses.field(default_factory=list, repr=False)
    attempt_records: list[Attempt] = dataclasses.field(default_factory=list, repr=False)

    @property
    def queue(self) -> str:
        return self.queue_name

    @property
    def attempt_number(self) -> int:
        """The 1-based number of the current (or next) run, lost ones included."""
        return self.attempts + self.lost_attempts + 1

    @property
    def trace_id(self) -> str | None:
        """The trace id of the producer span, from the stored ``traceparent``."""
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=row["id"],
            task_name=row["task_name"],
            queue_name=row["queue_name"],
            args=row["args"],
            priority=row["priority"],
            lock=row["lock"],
            queueing_lock=row["queueing_lock"],
            status=Status(row["status"]),
            scheduled_at=row["scheduled_at"],
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            attempts=row["attempts"],
            lost_attempts=row.get("lost_attempts") or 0,
            worker_id=str(row["worker_id"]) if row.get("worker_id") else None,
            attempt_id=row.get("attempt_id"),
            started_at=row.get("started_at"),
            traceparent=row.get("traceparent"),
            tracestate=row.get("tracestate"),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (used by ``--json`` outputs)."""

        def iso(value: Any) -> Any:
            return value.isoformat() if isinstance(value, datetime.datetime) else value

        data = {
            field.name: iso(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.name not in ("events", "attempt_records")
        }
        data["status"] = str(self.status)
        data["trace_id"] = self.trace_id
        data["events"] = [
            {k: iso(v) for k, v in dataclasses.asdict(e).items()} for e in self.events
        ]
        data["attempt_records"] = [
            {k: iso(v) for k, v in dataclasses.asdict(a).items()} for a in self.attempt_records
        ]
        return data


@dataclasses.dataclass
class AttemptResult:
    """How an attempt ended and what happens to its job next (written by ``finish_jobs``)."""

    job_id: int
    attempt_id: int
    status: Status  # the job's next status: todo (retry/deferred) or a final one
    outcome: Outcome
    event: str
    increment_attempts: bool = True
    retry_in: float | None = None
    retry_at: datetime.datetime | None = None
    priority: int | None = None
    queue: str | None = None
    lock: str | None = None
    duration: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
