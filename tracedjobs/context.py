"""What a task receives with ``pass_context=True``."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracedjobs.app import App
    from tracedjobs.jobs import Job
    from tracedjobs.tasks import Task


class AbortReason(enum.Enum):
    """Why a running job was asked to stop (Procrastinate's ``job_context.AbortReason``)."""

    USER_REQUEST = "user_request"  # cancel_job_by_id(id, abort=True), `jobs cancel --abort`
    SHUTDOWN = "shutdown"  # the worker's graceful shutdown timeout passed
    TIMEOUT = "timeout"  # the task's ``timeout=`` passed (Procrastinate has no task timeouts)


@dataclasses.dataclass
class JobContext:
    """The running job, its task and worker; ``should_abort()`` for cooperative cancel."""

    app: App
    job: Job
    task: Task[Any, Any]
    worker_name: str
    worker_id: str
    worker_queues: list[str] | None = None
    # The worker's ``additional_context`` (a copy per job), as in Procrastinate.
    additional_context: dict[str, Any] = dataclasses.field(default_factory=dict)
    trace_id: str | None = None
    span_id: str | None = None
    # Set once, read from the task's thread: a plain attribute is enough (and a
    # threading.Event per job cost more than the rest of the context).
    _abort_reason: AbortReason | None = dataclasses.field(default=None, repr=False)

    def should_abort(self) -> bool:
        """True once the job was asked to abort (``cancel_job_by_id(id, abort=True)``), its
        timeout passed, or the worker is shutting down past its graceful timeout."""
        return self._abort_reason is not None

    async def should_abort_async(self) -> bool:
        return self._abort_reason is not None

    def abort_reason(self) -> AbortReason | None:
        """Why the job was asked to stop (the first reason, if several came), or None."""
        return self._abort_reason
