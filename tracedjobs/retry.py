"""Retry strategies: when a failed attempt runs again, and where (seeds 002/003)."""

from __future__ import annotations

import dataclasses
import datetime
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tracedjobs.exceptions import JobLost

if TYPE_CHECKING:
    from tracedjobs.jobs import Job


@dataclasses.dataclass
class RetryDecision:
    """What to do after a failed attempt.

    ``retry_in`` takes ``timedelta`` keywords (``{"seconds": 5}``); ``retry_at`` a datetime.
    ``priority``, ``queue`` and ``lock``, when given, move the retried job.
    """

    should_retry: bool = True
    retry_in: dict[str, float] | None = None
    retry_at: datetime.datetime | None = None
    priority: int | None = None
    queue: str | None = None
    lock: str | None = None

    def __post_init__(self) -> None:
        if self.retry_in is not None and self.retry_at is not None:
            raise ValueError("give retry_in or retry_at, not both")
        if self.retry_in is not None:
            try:
                datetime.timedelta(**self.retry_in)
            except TypeError as exc:
                raise ValueError(
                    f"retry_in={self.retry_in!r} is not valid: use timedelta keywords "
                    "such as {'seconds': 5}"
                ) from exc
        if self.retry_at is not None and self.retry_at.tzinfo is None:
            raise ValueError("retry_at must be timezone-aware (e.g. tracedjobs.utils.utcnow())")

    @property
    def delay_seconds(self) -> float | None:
        if self.retry_in is None:
            return None if self.retry_at is not None else 0.0
        return datetime.timedelta(**self.retry_in).total_seconds()


class BaseRetryStrategy:
    """Subclass and implement ``get_retry_decision`` (or the legacy ``get_schedule_in``)."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        schedule_in = self.get_schedule_in(exception=exception, attempts=job.attempts)
        if schedule_in is None:
            return None
        return RetryDecision(retry_in={"seconds": schedule_in})

    def get_schedule_in(self, *, exception: BaseException, attempts: int) -> float | None:
        """Legacy API: seconds until the retry, or None for no retry."""
        raise NotImplementedError("implement get_retry_decision(*, exception, job)")


def _uses_legacy_api(strategy: BaseRetryStrategy) -> bool:
    cls = type(strategy)
    return (
        cls.get_schedule_in is not BaseRetryStrategy.get_schedule_in
        and cls.get_retry_decision is BaseRetryStrategy.get_retry_decision
    )


class RetryStrategy(BaseRetryStrategy):
    """Retry up to ``max_attempts`` times (None: forever).

    The n-th retry (n = 1, 2, 3…) waits ``wait + linear_wait * n + exponential_wait ** n``
    seconds. With ``retry_exceptions``, only those exception types are retried; a lost
    attempt (its worker died) is retried whenever attempts remain.
    """

    def __init__(
        self,
        *,
        max_attempts: int | None = None,
        wait: float = 0,
        linear_wait: float = 0,
        exponential_wait: float = 0,
        retry_exceptions: Iterable[type[BaseException]] | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.wait = wait
        self.linear_wait = linear_wait
        self.exponential_wait = exponential_wait
        self.retry_exceptions = tuple(retry_exceptions) if retry_exceptions else None

    def delay_for_retry(self, n: int) -> float:
        """Seconds to wait before the n-th retry (1-based)."""
        exponential = self.exponential_wait**n if self.exponential_wait else 0
        return self.wait + self.linear_wait * n + exponential

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if self.max_attempts is not None and job.attempts >= self.max_attempts:
            return None
        if (
            self.retry_exceptions
            and not isinstance(exception, JobLost)
            and not isinstance(exception, self.retry_exceptions)
        ):
            return None
        return RetryDecision(retry_in={"seconds": self.delay_for_retry(job.attempts + 1)})

    def __repr__(self) -> str:
        return (
            f"RetryStrategy(max_attempts={self.max_attempts}, wait={self.wait}, "
            f"linear_wait={self.linear_wait}, exponential_wait={self.exponential_wait})"
        )


def get_retry_strategy(retry: Any) -> BaseRetryStrategy | None:
    """``retry=`` of ``@app.task``: False/0/None → none, True → forever, n → n retries."""
    if retry is None or retry is False:
        return None
    if retry is True:
        return RetryStrategy()
    if isinstance(retry, int):
        if retry < 0:
            raise ValueError("retry must be >= 0")
        return RetryStrategy(max_attempts=retry) if retry else None
    if isinstance(retry, BaseRetryStrategy):
        if _uses_legacy_api(retry):
            warnings.warn(
                f"{type(retry).__name__}.get_schedule_in() is deprecated: implement "
                "get_retry_decision(*, exception, job) returning a RetryDecision",
                DeprecationWarning,
                stacklevel=3,
            )
        return retry
    raise TypeError(f"retry={retry!r}: expected a bool, an int or a BaseRetryStrategy")


def decide(
    strategy: BaseRetryStrategy | None, exception: BaseException, job: Job
) -> RetryDecision | None:
    """The strategy's decision, normalised: None means "do not retry"."""
    if strategy is None:
        return None
    decision = strategy.get_retry_decision(exception=exception, job=job)
    if decision is None or not decision.should_retry:
        return None
    return decision
