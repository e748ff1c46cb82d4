"""Seed 002/003 examples, verbatim but for the import (see the notes marked NOTE).

``random.random`` follows ``$SEEDS_RANDOM`` (comma-separated values, the last repeating)
so that the seeds' flaky tasks fail a known number of times.
"""

from __future__ import annotations

import os
import random

import tracedjobs as procrastinate

app = procrastinate.App()

if os.environ.get("SEEDS_RANDOM"):
    _script = [float(v) for v in os.environ["SEEDS_RANDOM"].split(",")]

    def _scripted() -> float:
        return _script.pop(0) if len(_script) > 1 else _script[0]

    random.random = _scripted  # type: ignore[assignment]


# -- "Simple strategies" -----------------------------------------------------------------
# NOTE: the seed uses the name flaky_task twice; the second is registered under its own name.

@app.task(retry=5)
def flaky_task():
    if random.random() > 0.9:
        raise Exception("Who could have seen this coming?")
    print("Hello world")


_flaky_task_retry_5 = flaky_task


@app.task(retry=True, name="flaky_task_forever")
def flaky_task():
    if random.random() > 0.9:
        raise Exception("Who could have seen this coming?")
    print("Hello world")


# -- "Advanced strategies" ---------------------------------------------------------------
from tracedjobs import RetryStrategy  # noqa: E402,F401


@app.task(retry=procrastinate.RetryStrategy(
    max_attempts=10,
    wait=5,
    retry_exceptions={ConnectionError, IOError}
))
def my_other_task():
    print("Hello world")


# -- "Implementing your own strategy" ---------------------------------------------------
# NOTE: the seed's bare `max_attempts` (a NameError) is read as `self.max_attempts`.
import random  # noqa: E402

from tracedjobs import Job, RetryDecision  # noqa: E402


class RandomRetryStrategy(procrastinate.BaseRetryStrategy):
    max_attempts = 3
    min = 1
    max = 10

    def get_retry_decision(self, *, exception:Exception, job:Job) -> RetryDecision:
        if job.attempts >= self.max_attempts:
            return RetryDecision(should_retry=False)

        wait = random.uniform(self.min, self.max)

        return RetryDecision(
            retry_in={"seconds": wait}, # or retry_at (a datetime object)
            priority=job.priority + 1, # optional
            queue="another_queue", # optional
            lock="another_lock", # optional
        )


class FastRandomRetryStrategy(RandomRetryStrategy):
    """The seed's strategy with sub-second waits, so the test stays fast."""

    min = 0.05
    max = 0.2


@app.task(retry=FastRandomRetryStrategy(), name="random_retry")
def random_retry():
    raise Exception("Who could have seen this coming?")


# -- "Knowing whether a job is on its last attempt" -------------------------------------
# NOTE: the seed mixes a tab and spaces for indentation (a TabError); made consistent.

@app.task(retry=10, pass_context=True)
def my_task(job_context: procrastinate.JobContext) -> None:
    job = job_context.job
    task = job_context.task
    if task.retry.get_retry_decision(exception=Exception(), job=job) is None:
        print("Warning: last attempt!")

    if random.random() < 0.9:
        raise Exception
