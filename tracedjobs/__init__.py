"""tracedjobs: a PostgreSQL-backed job runner for Python that is observable by design."""

from __future__ import annotations

from tracedjobs import exceptions, utils
from tracedjobs.app import App
from tracedjobs.blueprints import Blueprint
from tracedjobs.connector import PsycopgConnector
from tracedjobs.context import AbortReason, JobContext
from tracedjobs.exceptions import (
    AlreadyEnqueued,
    DeferJob,
    JobAborted,
    TaskAlreadyRegistered,
    TaskNotFound,
    UnboundTaskError,
)
from tracedjobs.jobs import Attempt, Event, Job, Outcome, Status
from tracedjobs.retry import BaseRetryStrategy, RetryDecision, RetryStrategy
from tracedjobs.tasks import Task

# Procrastinate's synchronous connector: ours serves sync and async callers alike.
SyncPsycopgConnector = PsycopgConnector

__all__ = [
    "AbortReason",
    "AlreadyEnqueued",
    "App",
    "Attempt",
    "BaseRetryStrategy",
    "Blueprint",
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
    "SyncPsycopgConnector",
    "Task",
    "TaskAlreadyRegistered",
    "TaskNotFound",
    "UnboundTaskError",
    "exceptions",
    "utils",
]

__version__ = "0.1.0"
