"""tracedjobs: a PostgreSQL-backed job runner for Python that is observable by design."""

from __future__ import annotations

from tracedjobs import exceptions, utils
from tracedjobs.app import App
from tracedjobs.connector import PsycopgConnector
from tracedjobs.context import JobContext
from tracedjobs.exceptions import (
    AlreadyEnqueued,
    DeferJob,
    JobAborted,
    TaskNotFound,
)
from tracedjobs.jobs import Attempt, Event, Job, Outcome, Status
from tracedjobs.retry import BaseRetryStrategy, RetryDecision, RetryStrategy
from tracedjobs.tasks import Task

__all__ = [
    "AlreadyEnqueued",
    "App",
    "Attempt",
    "BaseRetryStrategy",
    "DeferJob",
    "Event",
    "Job",
    "JobAborted",
    "JobContext",
    "Outcome",
    "PsycopgConnector",
    "RetryDecision",
    "RetryStrategy",
    "Status",
    "Task",
    "TaskNotFound",
    "exceptions",
    "utils",
]

__version__ = "0.1.0"
