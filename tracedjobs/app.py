"""The App: configuration, the task registry, and the entry points to workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal, TypeVar, overload

import anyio

from tracedjobs import periodic as periodic_mod
from tracedjobs import telemetry
from tracedjobs.connector import PsycopgConnector
from tracedjobs.exceptions import ConfigurationError, TaskNotFound
from tracedjobs.manager import JobManager
from tracedjobs.tasks import JobDeferrer, OnLost, Task

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
TraceParent = Literal["link", "parent"]


class App:
    """A tracedjobs application: where the database is and which tasks exist.

    ``App()`` uses ``$TRACEDJOBS_DATABASE_URL``, else an embedded PostgreSQL.
    ``App(connector=PsycopgConnector(conninfo=...))`` is accepted as in Procrastinate.
    ``trace_parent="parent"`` makes each attempt's span a child of the producer span
    instead of linking to it. Task arguments are never put on spans unless
    ``record_args=True``.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        connector: PsycopgConnector | None = None,
        trace_parent: TraceParent = "link",
        record_args: bool = False,
        import_paths: list[str] | None = None,
    ) -> None:
        if database_url is not None and connector is not None:
            raise ConfigurationError("give database_url or connector, not both")
        if trace_parent not in ("link", "parent"):
            raise ConfigurationError(
                f"trace_parent must be 'link' or 'parent', not {trace_parent!r}"
            )
        self.connector = connector or PsycopgConnector(conninfo=database_url)
        self.trace_parent: TraceParent = trace_parent
        self.record_args = record_args
        self.import_paths = list(import_paths or [])
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_registry = periodic_mod.PeriodicRegistry()
        self.job_manager = JobManager(self.connector)
        self._schema_checked = False

    # -- tasks -------------------------------------------------------------------------

    @overload
    def task(self, func: F, /) -> Task[Any, Any]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        lock: str | None = None,
        queueing_lock: str | None = None,
        retry: Any = False,
        pass_context: bool = False,
        timeout: float | None = None,
        on_lost: OnLost = "retry",
    ) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, func: Any = None, /, **options: Any) -> Any:
        """Register a function (sync or async) as a task: ``@app.task(queue="emails", retry=5)``."""

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(f, app=self, **options)
            existing = self.tasks.get(task.name)
            if existing is not None and existing.func is not f:
                raise ConfigurationError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(func) if func is not None else register

    def periodic(
        self, *, cron: str, periodic_id: str = "", **kwargs: Any
    ) -> Callable[[Task[Any, Any]], Task[Any, Any]]:
        """Defer the task on a cron schedule (5 fields, or 6 with seconds last)."""
        schedule = periodic_mod.parse_cron(cron)

        def register(task: Task[Any, Any]) -> Task[Any, Any]:
            if not isinstance(task, Task):
                raise ConfigurationError(
                    "@app.periodic must be stacked above @app.task (it takes a Task)"
                )
            self.periodic_registry.add(
                periodic_mod.PeriodicTask(
                    task=task, cron=cron, schedule=schedule, periodic_id=periodic_id, kwargs=kwargs
                )
            )
            return task

        return register

    def get_task(self, name: str) -> Task[Any, Any]:
        """The task by its full name, or by its short name when only one task has it."""
        task = self.tasks.get(name)
        if task is not None:
            return task
        # `send_email` for `myapp.tasks.send_email`: what a user types at the command line.
        matches = sorted(n for n in self.tasks if n.rpartition(".")[2] == name)
        if len(matches) == 1:
            return self.tasks[matches[0]]
        if matches:
            raise TaskNotFound(
                f"task name {name!r} is ambiguous: give the full name, one of {', '.join(matches)}"
            )
        known = ", ".join(sorted(self.tasks)) or "none"
        raise TaskNotFound(f"no task named {name!r} in this app (known tasks: {known})")

    def configure_task(self, name: str, **options: Any) -> JobDeferrer:
        """Defer a task by name (Procrastinate's ``app.configure_task``)."""
        return self.get_task(name).configure(**options)

    def count_sent(self, queue: str, task_name: str, ids: list[int], connection: Any) -> None:
        telemetry.record_sent_when_committed(queue, task_name, ids, connection, self.job_manager)

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self) -> Iterator[App]:
        """Open the pools (optional: they open on first use); close them on exit."""
        with self.connector.connection():
            pass
        try:
            yield self
        finally:
            self.connector.close()

    @contextlib.asynccontextmanager
    async def open_async(self) -> AsyncIterator[App]:
        async with self.connector.connection_async():
            pass
        try:
            yield self
        finally:
            await self.connector.close_async()

    def close(self) -> None:
        self.connector.close()

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return self.job_manager.migrate()

    def check_schema(self) -> int:
        """Raise SchemaError unless migrated; the embedded database migrates itself."""
        if self.connector.url and self.connector.is_embedded:
            self.job_manager.migrate()
        return self.job_manager.check_schema()

    # -- workers -----------------------------------------------------------------------

    async def run_worker_async(self, **options: Any) -> None:
        """Run a worker until stopped (or, with ``wait=False``, until no job is ready).

        Options: queues, concurrency, name, wait, listen_notify, polling_interval,
        update_heartbeat_interval, stalled_worker_timeout, rescue_stalled,
        periodic, install_signal_handlers, shutdown_timeout.
        """
        from tracedjobs.worker import Worker

        await anyio.to_thread.run_sync(self.check_schema)
        await Worker(self, **options).run()

    def run_worker(self, **options: Any) -> None:
        async def main() -> None:
            try:
                await self.run_worker_async(**options)
            finally:
                # Tasks may have opened the async pool in this event loop, which ends here.
                await self.connector.close_async_pool()

        anyio.run(main)
