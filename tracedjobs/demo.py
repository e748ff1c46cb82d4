"""``tracedjobs demo``: sample tasks that succeed, retry and fail, run by a real worker.

The app is importable too: ``tracedjobs worker --app tracedjobs.demo:app``.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from typing import Any

import anyio

import tracedjobs
from tracedjobs.worker import Worker

logger = logging.getLogger("tracedjobs.demo")

app = tracedjobs.App()


@app.task(queue="emails", retry=2)
async def send_welcome_email(to: str) -> None:
    """Always works, in 20–80 ms."""
    await anyio.sleep(random.uniform(0.02, 0.08))
    logger.info("sent welcome email to %s", to)


@app.task(
    queue="images", retry=tracedjobs.RetryStrategy(max_attempts=3, wait=0.5), pass_context=True
)
def resize_image(context: tracedjobs.JobContext, image_id: int) -> None:
    """A sync task: every third image fails on its first attempt, then succeeds."""
    time.sleep(random.uniform(0.01, 0.05))
    if image_id % 3 == 0 and context.job.attempts == 0:
        raise OSError(f"image {image_id}: storage timed out")


@app.task(queue="payments", retry=1)
async def charge_card(order_id: int, amount: int) -> None:
    """Amounts over 100 are declined, on every attempt: these jobs end failed."""
    await anyio.sleep(0.03)
    if amount > 100:
        raise ValueError(f"order {order_id}: card declined for {amount} EUR")


@app.task(queue="reports")
async def nightly_report(day: str) -> None:
    await anyio.sleep(0.2)


def defer_samples(count: int) -> list[int]:
    ids: list[int] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            ids.append(send_welcome_email.defer(to=f"user{i}@example.com"))
        elif kind == 1:
            ids.append(resize_image.defer(image_id=i))
        elif kind == 2:
            ids.append(charge_card.defer(order_id=i, amount=60 if i % 8 == 2 else 150))
        else:
            ids.append(nightly_report.defer(day=f"2026-11-{(i % 28) + 1:02d}"))
    return ids


async def _run_until_done(ids: list[int]) -> None:
    worker = Worker(app, concurrency=4, update_heartbeat_interval=2, stalled_worker_timeout=10)

    async def watch() -> None:
        while True:
            await anyio.sleep(0.3)
            if await anyio.to_thread.run_sync(app.job_manager.count_unfinished, ids) == 0:
                worker.stop()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await worker.run()
        tg.cancel_scope.cancel()


def summary_table(jobs: list[tracedjobs.Job], width: int) -> Any:
    """What happened to each job, fitted to the terminal (ids and statuses never cut)."""
    from rich.text import Text

    from tracedjobs.tui.fit import Column, fitted_table
    from tracedjobs.tui.render import STATUS_STYLE, short_task

    def last_duration(job: tracedjobs.Job) -> str:
        last = job.attempt_records[-1] if job.attempt_records else None
        return f"{last.duration:.3f}s" if last and last.duration is not None else "-"

    def last_error(job: tracedjobs.Job) -> str:
        errors = [a for a in job.attempt_records if a.error_type]
        return f"{errors[-1].error_type}: {errors[-1].error_message}" if errors else ""

    return fitted_table(
        [
            Column("job", [str(j.id) for j in jobs], keep=True, justify="right"),
            Column("task", [short_task(j.task_name) for j in jobs], rank=2),
            Column("queue", [j.queue_name for j in jobs], rank=4),
            Column("status", [Text(str(j.status), style=STATUS_STYLE.get(str(j.status), ""))
                              for j in jobs], keep=True),
            Column("attempts", [str(j.attempts) for j in jobs], rank=3, justify="right"),
            Column("duration", [last_duration(j) for j in jobs], rank=5, justify="right"),
            Column("error", [last_error(j) for j in jobs], rank=1, min_width=16),
        ],
        width,
        title="what happened",
    )


def main(args: argparse.Namespace) -> int:
    from tracedjobs import otel_sdk
    from tracedjobs.tui.render import make_console

    console = make_console()
    if args.database_url:
        from tracedjobs.cli.base import use_database

        use_database(app, args.database_url)
    logging.getLogger("tracedjobs.worker").setLevel(logging.ERROR)
    logging.getLogger("tracedjobs.demo").setLevel(logging.WARNING)
    console.print(f"[bold]tracedjobs demo[/] — database {app.connector.safe_url}")
    applied = app.migrate()
    if applied:
        console.print(f"  schema created ({', '.join(applied)})")
    sdk = otel_sdk.configure(metrics_port=args.metrics_port, default_service_name="tracedjobs-demo")
    try:
        started = time.monotonic()
        ids = defer_samples(args.jobs)
        console.print(f"  deferred {len(ids)} jobs (ids {ids[0]}–{ids[-1]}); running a worker…")
        anyio.run(_run_until_done, ids)
        elapsed = time.monotonic() - started
    finally:
        sdk.shutdown()

    jobs = [app.job_manager.get_job(i) for i in ids]
    console.print(summary_table(jobs, console.width))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[str(job.status)] = counts.get(str(job.status), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"[bold]{len(jobs)} jobs in {elapsed:.1f} s:[/] {summary}")
    console.print(
        "next: `tracedjobs jobs show "
        f"{next((j.id for j in jobs if j.status == 'failed'), ids[0])}` for a job's history, "
        "`tracedjobs top` for the live view, `tracedjobs worker --app tracedjobs.demo:app` "
        "to run a worker yourself. Set OTEL_EXPORTER_OTLP_ENDPOINT to send traces and metrics."
    )
    return 0 if counts.get("succeeded") and counts.get("failed") else 1
