"""An in-process worker for integration tests, and waits on job state."""

from __future__ import annotations

import contextlib
import datetime
import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio

import tracedjobs
from tracedjobs.jobs import FINISHED_STATUSES
from tracedjobs.store import PostgresStore
from tracedjobs.worker import Worker

FAST = {
    "install_signal_handlers": False,
    "update_heartbeat_interval": 0.5,
    "stalled_worker_timeout": 5.0,
    "polling_interval": 1.0,
}


class StoreWrapper:
    """A real PostgresStore with some methods replaced by a test; the rest go to it."""

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.asynccontextmanager
async def running_worker(app: tracedjobs.App, **options: Any) -> AsyncIterator[Worker]:
    """A worker running in this event loop; stopped cleanly on exit (cancelled on error)."""
    worker = Worker(app, **{**FAST, **options})
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        except BaseException:
            tg.cancel_scope.cancel()
            raise
        worker.stop()


async def wait_for_status(
    app: tracedjobs.App, job_id: int, *statuses: str, timeout: float = 30
) -> tracedjobs.Job:
    """The job (with history) once its status is one of ``statuses`` (default: finished)."""
    wanted = {str(s) for s in (statuses or FINISHED_STATUSES)}
    job = None
    try:
        with anyio.fail_after(timeout):
            while True:
                job = await app.job_manager.get_job_async(job_id)
                if str(job.status) in wanted:
                    return job
                await anyio.sleep(0.03)
    except TimeoutError:
        raise AssertionError(
            f"job {job_id} did not reach {sorted(wanted)} in {timeout} s: "
            f"{job and job.status}, events {[e.type for e in job.events] if job else None}"
        ) from None


async def run_until_finished(
    app: tracedjobs.App, *job_ids: int, timeout: float = 30, **options: Any
) -> list[tracedjobs.Job]:
    async with running_worker(app, **options):
        return [await wait_for_status(app, job_id, timeout=timeout) for job_id in job_ids]


def finish(app: tracedjobs.App, *job_ids: int, **options: Any) -> list[tracedjobs.Job]:
    """Run a worker until all these jobs are finished; returns them with their history."""

    async def main() -> list[tracedjobs.Job]:
        try:
            return await run_until_finished(app, *job_ids, **options)
        finally:
            await app.connector.close_async()

    return anyio.run(main)


def gaps(job: tracedjobs.Job) -> list[float]:
    """Seconds between the end of each attempt and the start of the next (database clock)."""
    records = job.attempt_records
    result = []
    for before, after in itertools.pairwise(records):
        assert before.finished_at is not None
        result.append((after.started_at - before.finished_at) / datetime.timedelta(seconds=1))
    return result


def outcomes(job: tracedjobs.Job) -> list[str | None]:
    return [a.outcome for a in job.attempt_records]


def event_types(job: tracedjobs.Job) -> list[str]:
    return [e.type for e in job.events]
