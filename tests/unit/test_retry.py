"""Retry strategies without a database: attempt counting, delays, decisions (§4)."""

from __future__ import annotations

import datetime
import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracedjobs
from tracedjobs import retry
from tracedjobs.exceptions import JobLost
from tracedjobs.retry import get_retry_strategy

settings_delay = st.floats(min_value=0, max_value=50, allow_nan=False, allow_infinity=False)


def job_with(attempts: int, **fields: object) -> tracedjobs.Job:
    return tracedjobs.Job(
        id=1, task_name="t", queue_name="default", args={}, attempts=attempts, **fields
    )


def attempts_until_given_up(strategy: tracedjobs.BaseRetryStrategy | None, cap: int) -> int:
    """How many attempts a job that always fails gets (stops counting at ``cap``)."""
    attempts = 0
    while attempts < cap:
        attempts += 1
        if retry.decide(strategy, RuntimeError("boom"), job_with(attempts - 1)) is None:
            break
    return attempts


# -- retry= ------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=200))
def test_retry_n_gives_n_plus_one_attempts(n: int) -> None:
    assert attempts_until_given_up(get_retry_strategy(n), cap=1000) == n + 1


@given(st.integers(min_value=0, max_value=10_000))
def test_retry_true_never_gives_up(earlier_attempts: int) -> None:
    decision = retry.decide(get_retry_strategy(True), RuntimeError(), job_with(earlier_attempts))
    assert decision is not None and decision.delay_seconds == 0


@pytest.mark.parametrize("value", [False, 0, None])
def test_retry_false_or_zero_means_a_single_attempt(value: object) -> None:
    assert get_retry_strategy(value) is None
    assert attempts_until_given_up(get_retry_strategy(value), cap=10) == 1


def test_retry_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        get_retry_strategy(-1)
    with pytest.raises(TypeError, match="BaseRetryStrategy"):
        get_retry_strategy("5")


# -- RetryStrategy delays --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"exponential_wait": 5}, [5, 25, 125]),
        ({"linear_wait": 5}, [5, 10, 15]),
        ({"wait": 5}, [5, 5, 5]),
        ({"wait": 0.1}, [0.1, 0.1, 0.1]),
        ({"linear_wait": 0.25}, [0.25, 0.5, 0.75]),
        ({}, [0, 0, 0]),
    ],
)
def test_documented_delays(options: dict[str, float], expected: list[float]) -> None:
    strategy = tracedjobs.RetryStrategy(**options)
    delays = []
    for earlier in range(3):
        decision = strategy.get_retry_decision(exception=Exception(), job=job_with(earlier))
        assert decision is not None
        delays.append(decision.delay_seconds)
    assert delays == pytest.approx(expected)


@given(
    wait=settings_delay,
    linear=settings_delay,
    exponential=st.floats(min_value=0, max_value=5, allow_nan=False),
    earlier=st.integers(min_value=0, max_value=8),
)
def test_nth_retry_waits_wait_plus_linear_n_plus_exponential_power_n(
    wait: float, linear: float, exponential: float, earlier: int
) -> None:
    strategy = tracedjobs.RetryStrategy(
        wait=wait, linear_wait=linear, exponential_wait=exponential
    )
    decision = strategy.get_retry_decision(exception=Exception(), job=job_with(earlier))
    assert decision is not None
    n = earlier + 1
    expected = wait + linear * n + (exponential**n if exponential else 0)
    assert decision.delay_seconds is not None
    # Delays go through a timedelta: microsecond resolution.
    assert math.isclose(decision.delay_seconds, expected, rel_tol=1e-9, abs_tol=1e-6)
    assert decision.delay_seconds >= 0


@given(
    wait=settings_delay,
    linear=settings_delay,
    exponential=st.floats(min_value=1, max_value=5, allow_nan=False),
    n=st.integers(min_value=1, max_value=8),
)
def test_delays_never_shrink_from_one_retry_to_the_next(
    wait: float, linear: float, exponential: float, n: int
) -> None:
    strategy = tracedjobs.RetryStrategy(
        wait=wait, linear_wait=linear, exponential_wait=exponential
    )
    assert strategy.delay_for_retry(n + 1) >= strategy.delay_for_retry(n)


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=60))
def test_max_attempts_bounds_the_retries(max_attempts: int, earlier: int) -> None:
    strategy = tracedjobs.RetryStrategy(max_attempts=max_attempts)
    decision = strategy.get_retry_decision(exception=Exception(), job=job_with(earlier))
    assert (decision is None) == (earlier >= max_attempts)


def test_retry_exceptions_limit_what_is_retried() -> None:
    strategy = tracedjobs.RetryStrategy(
        max_attempts=10, wait=5, retry_exceptions={ConnectionError, IOError}
    )
    job = job_with(0)
    assert strategy.get_retry_decision(exception=ConnectionResetError(), job=job) is not None
    assert strategy.get_retry_decision(exception=OSError(), job=job) is not None
    assert strategy.get_retry_decision(exception=ValueError(), job=job) is None
    assert strategy.get_retry_decision(exception=TimeoutError(), job=job) is not None  # an OSError
    # A lost attempt (its worker died) says nothing about the task: retried.
    assert strategy.get_retry_decision(exception=JobLost("gone"), job=job) is not None


# -- RetryDecision ---------------------------------------------------------------------


def test_retry_decision_takes_retry_in_or_retry_at_not_both() -> None:
    at = tracedjobs.utils.utcnow()
    assert tracedjobs.RetryDecision(retry_at=at).delay_seconds is None
    assert tracedjobs.RetryDecision(retry_in={"milliseconds": 250}).delay_seconds == 0.25
    assert tracedjobs.RetryDecision().delay_seconds == 0.0
    with pytest.raises(ValueError, match="not both"):
        tracedjobs.RetryDecision(retry_in={"seconds": 1}, retry_at=at)


def test_retry_decision_refuses_bad_values_at_once() -> None:
    with pytest.raises(ValueError, match="timedelta keywords"):
        tracedjobs.RetryDecision(retry_in={"secs": 1})
    with pytest.raises(ValueError, match="timezone-aware"):
        tracedjobs.RetryDecision(retry_at=datetime.datetime(2030, 1, 1))


def test_should_retry_false_and_none_both_mean_no_retry() -> None:
    class Never(tracedjobs.BaseRetryStrategy):
        def get_retry_decision(self, *, exception, job):  # type: ignore[no-untyped-def]
            return tracedjobs.RetryDecision(should_retry=False, retry_in={"seconds": 1})

    class Nothing(tracedjobs.BaseRetryStrategy):
        def get_retry_decision(self, *, exception, job):  # type: ignore[no-untyped-def]
            return None

    assert retry.decide(Never(), Exception(), job_with(0)) is None
    assert retry.decide(Nothing(), Exception(), job_with(0)) is None


def test_legacy_get_schedule_in_works_with_a_deprecation_warning() -> None:
    class Legacy(tracedjobs.BaseRetryStrategy):
        def get_schedule_in(self, *, exception, attempts):  # type: ignore[no-untyped-def]
            return None if attempts >= 2 else 0.5 * (attempts + 1)

    with pytest.warns(DeprecationWarning, match="get_schedule_in"):
        strategy = get_retry_strategy(Legacy())
    assert strategy is not None
    assert [
        None if (d := strategy.get_retry_decision(exception=Exception(), job=job_with(k))) is None
        else d.delay_seconds
        for k in range(3)
    ] == [0.5, 1.0, None]


def test_modern_strategies_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_retry_strategy(tracedjobs.RetryStrategy(max_attempts=1))


# -- the seeds' code ---------------------------------------------------------------------

# Seed 002's strategy, verbatim but for the import and the bare `max_attempts` (a NameError
# in the seed) read as `self.max_attempts`, lives in the seed app module.
import tracedjobs as procrastinate  # noqa: E402 - the seeds' spelling
from tests.apps.seeds_retry import RandomRetryStrategy  # noqa: E402


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=-5, max_value=5))
def test_seed_random_retry_strategy_moves_the_job_until_it_gives_up(
    earlier: int, priority: int
) -> None:
    job = job_with(earlier, priority=priority)
    decision = retry.decide(RandomRetryStrategy(), Exception(), job)
    if earlier >= 3:
        assert decision is None
        return
    assert decision is not None
    assert decision.delay_seconds is not None and 1 <= decision.delay_seconds <= 10
    assert (decision.priority, decision.queue, decision.lock) == (
        priority + 1,
        "another_queue",
        "another_lock",
    )


@given(st.integers(min_value=1, max_value=30))
def test_last_attempt_check_is_true_on_the_last_attempt_only(retries: int) -> None:
    app = tracedjobs.App(database_url="postgresql://unused@127.0.0.1:1/unused")

    @app.task(retry=retries, pass_context=True)
    def my_task(job_context: procrastinate.JobContext) -> None: ...

    is_last = [
        my_task.retry.get_retry_decision(exception=Exception(), job=job_with(k)) is None
        for k in range(retries + 1)  # every attempt the job gets
    ]
    assert is_last == [False] * retries + [True]


def test_without_retry_every_attempt_is_the_last() -> None:
    app = tracedjobs.App(database_url="postgresql://unused@127.0.0.1:1/unused")

    @app.task(pass_context=True)
    def once(job_context: procrastinate.JobContext) -> None: ...

    assert once.retry.get_retry_decision(exception=Exception(), job=job_with(0)) is None
