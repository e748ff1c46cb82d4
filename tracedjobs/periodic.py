"""Periodic tasks: cron schedules deferred once per tick across any number of workers."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from croniter import croniter

from tracedjobs.exceptions import ConfigurationError

if TYPE_CHECKING:
    from tracedjobs.store import WorkerStore
    from tracedjobs.tasks import Task

logger = logging.getLogger(__name__)

# Ticks older than this when a worker starts are not replayed.
DEFAULT_CATCH_UP_SECONDS = 0.0


def parse_cron(cron: str) -> str:
    """Validate a 5-field cron expression, or 6 fields with seconds last."""
    fields = cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(cron):
        raise ConfigurationError(
            f"invalid cron expression {cron!r}: use 5 fields (minute hour day month weekday) "
            "or 6 with seconds last, e.g. '*/10 * * * *' or '* * * * * */5'"
        )
    return cron


@dataclasses.dataclass
class PeriodicTask:
    task: Task[Any, Any]
    cron: str
    schedule: str
    periodic_id: str = ""
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Task.configure options for every tick (queue, priority, lock, queueing_lock).
    configure: dict[str, Any] = dataclasses.field(default_factory=dict)

    def ticks_between(self, start: float, end: float) -> list[int]:
        """Tick timestamps t with start < t <= end (epoch seconds)."""
        it = croniter(self.schedule, datetime.datetime.fromtimestamp(start, datetime.UTC))
        ticks: list[int] = []
        while True:
            tick = int(it.get_next(float))
            if tick > end:
                return ticks
            ticks.append(tick)

    def next_tick_after(self, moment: float) -> float:
        it = croniter(self.schedule, datetime.datetime.fromtimestamp(moment, datetime.UTC))
        return float(it.get_next(float))


class PeriodicRegistry:
    def __init__(self) -> None:
        self.tasks: list[PeriodicTask] = []

    def add(self, periodic: PeriodicTask) -> None:
        for existing in self.tasks:
            if (existing.task.name, existing.periodic_id) == (
                periodic.task.name,
                periodic.periodic_id,
            ):
                raise ConfigurationError(
                    f"task {periodic.task.name!r} already has a periodic schedule with "
                    f"periodic_id={periodic.periodic_id!r}; give each one its own periodic_id"
                )
        self.tasks.append(periodic)


def tick_params(periodic: PeriodicTask, tick: int) -> dict[str, Any]:
    task = periodic.task
    args = {**periodic.kwargs, "timestamp": tick}
    options = {
        "queue": task.queue,
        "priority": task.priority,
        "lock": task.lock,
        "queueing_lock": task.queueing_lock,
        **periodic.configure,
    }
    return {
        "task_name": task.name,
        "periodic_id": periodic.periodic_id,
        "tick": tick,
        "queue_name": options["queue"],
        "priority": options["priority"],
        "lock": options["lock"],
        "queueing_lock": options["queueing_lock"],
        "args": json.dumps(args),
        "traceparent": None,
        "tracestate": None,
    }


class Deferrer:
    """The periodic-deferral side loop of one worker: every tick in (since, now] of every
    periodic task becomes at most one job across all workers."""

    def __init__(self, store: WorkerStore, registry: PeriodicRegistry, catch_up: float) -> None:
        self.store = store
        self.tasks = registry.tasks
        self._since = time.time() - catch_up

    async def step(self) -> None:
        now = time.time()
        for periodic in self.tasks:
            for tick in periodic.ticks_between(self._since, now):
                job_id = await self.store.defer_periodic(tick_params(periodic, tick))
                if job_id is not None:
                    logger.info(
                        "periodic task %s deferred for tick %s (job %s)",
                        periodic.task.name,
                        tick,
                        job_id,
                        extra={"action": "periodic_task_deferred"},
                    )
        # Only once every tick is deferred: after a failure the next step catches up.
        self._since = now

    def next_in(self) -> float:
        """Seconds until the next tick of any periodic task."""
        now = time.time()
        return max(0.0, min(p.next_tick_after(now) for p in self.tasks) - now) + 0.005
