"""A Procrastinate-style app built from blueprints, for worker subprocesses.

Written as a Procrastinate user would (``import tracedjobs as procrastinate``).
"""

from __future__ import annotations

import time

import tracedjobs as procrastinate
from tests.apps.recording import record_run

cats = procrastinate.Blueprint()
kittens = procrastinate.Blueprint()


@cats.task(name="feed", aliases=["old_feed"], pass_context=True)
def feed(context: procrastinate.JobContext, label: str) -> None:
    record_run(context, label, time.time(), {"task": context.task.name})


@kittens.task(name="nap", pass_context=True)
async def nap(context: procrastinate.JobContext, label: str) -> None:
    record_run(context, label, time.time(), {"task": context.task.name})


# Procrastinate's periodic(**configure_kwargs): configure options plus task_kwargs.
@cats.periodic(
    cron="* * * * * *", periodic_id="tick", queue="ticks", priority=3, task_kwargs={"label": "tick"}
)
@cats.task(name="tick", pass_context=True)
def tick(context: procrastinate.JobContext, timestamp: int, label: str) -> None:
    record_run(
        context,
        label,
        time.time(),
        {"timestamp": timestamp, "queue": context.job.queue, "priority": context.job.priority},
    )


cats.add_tasks_from(kittens, namespace="kittens")

app = procrastinate.App(import_paths=["tests.compat.apps.split_tasks"])
app.add_tasks_from(cats, namespace="cats")
