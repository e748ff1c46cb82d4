"""Every error tracedjobs raises, with a message that says what to do next."""

from __future__ import annotations


class TracedJobsError(Exception):
    """Base class of tracedjobs errors."""


class ConfigurationError(TracedJobsError):
    """The app, the database URL or a task is set up wrongly."""


class TaskAlreadyRegistered(ConfigurationError):
    """A task name or alias is already taken in this App or Blueprint."""


class MiddlewareKindMismatch(ConfigurationError):
    """A middleware's kind (sync or async) does not match what it wraps (see middleware.py)."""


class UnboundTaskError(ConfigurationError):
    """A Blueprint's task was deferred before the blueprint was added to an App."""


class DatabaseError(TracedJobsError):
    """The database cannot be reached or refused a query."""


class SchemaError(TracedJobsError):
    """The database schema is missing or older than this version of tracedjobs."""


class AlreadyEnqueued(TracedJobsError):
    """A job with the same queueing lock is already waiting in `todo`."""


class TaskNotFound(TracedJobsError):
    """No task with that name is registered in the app."""


class JobNotFound(TracedJobsError):
    """No job with that id."""


class InvalidJobState(TracedJobsError):
    """The job is not in a status that allows this action."""


class JobAborted(TracedJobsError):
    """Raised inside a task (or by it) when the job was asked to abort."""


class JobLost(TracedJobsError):
    """The worker running the attempt stopped heartbeating; passed to retry strategies."""


class DeferJob(Exception):
    """Raise inside a task to run it again later without counting a failure.

    ``delay`` is in seconds; ``increment_attempts=False`` (the default) keeps the attempt count.
    """

    def __init__(self, delay: float = 0, *, increment_attempts: bool = False) -> None:
        super().__init__(f"deferred for {delay} s")
        self.delay = float(delay)
        self.increment_attempts = increment_attempts
