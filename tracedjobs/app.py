"""The App: configuration, the task registry, and the entry points to workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack, overload

import anyio

from tracedjobs import periodic as periodic_mod
from tracedjobs.connector import PsycopgConnector
from tracedjobs.exceptions import ConfigurationError, TaskNotFound
from tracedjobs.manager import JobManager
from tracedjobs.tasks import JobDeferrer, Task, TaskOptions

if TYPE_CHECKING:
    from tracedjobs.worker import WorkerOptions

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
        # A bare App() looks at $TRACEDJOBS_DATABASE_URL, then falls back to the embedded
        # server; an explicit connector means exactly what it says (libpq defaults if empty).
        self.connector = connector or PsycopgConnector.for_app(database_url)
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
        self, func: None = None, /, **options: Unpack[TaskOptions]
    ) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, func: Any = None, /, **options: Unpack[TaskOptions]) -> Any:
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

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, pool: Any = None) -> Iterator[App]:
        """Open the connector now (optional: it opens on first use); close it on exit.
        ``pool``: a psycopg ``ConnectionPool`` of yours to use instead (left open)."""
        self.connector.open(pool)
        try:
            yield self
        finally:
            self.connector.close()

    @contextlib.asynccontextmanager
    async def open_async(self, pool: Any = None) -> AsyncIterator[App]:
        """The async twin of :meth:`open` (``pool``: an ``AsyncConnectionPool`` of yours)."""
        await self.connector.open_async(pool)
        try:
            yield self
        finally:
            await self.connector.close_async()

    def close(self) -> None:
        self.connector.close()

    async def close_async(self) -> None:
        await self.connector.close_async()

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return self.job_manager.migrate()

    def check_schema(self) -> int:
        """Raise SchemaError unless migrated (the embedded default migrates itself)."""
        return self.job_manager.check_schema()

    # -- workers -----------------------------------------------------------------------

    async def run_worker_async(self, **options: Unpack[WorkerOptions]) -> None:
        """Run a worker until stopped (or, with ``wait=False``, until no job is ready).

        Options are Procrastinate's (``queues``, ``concurrency``, ``name``, ``wait``,
        ``listen_notify``, ``fetch_job_polling_interval``, ``abort_job_polling_interval``,
        ``shutdown_graceful_timeout``, ``delete_jobs``, ``additional_context``,
        ``update_heartbeat_interval``, ``stalled_worker_timeout``,
        ``install_signal_handlers``) plus ``rescue_stalled``, ``periodic_tasks`` and
        ``periodic_catch_up``; an unknown one raises ``TypeError`` at once.
        """
        from tracedjobs.worker import Worker

        worker = Worker(self, **options)
        await anyio.to_thread.run_sync(self.check_schema)
        await worker.run()

    def run_worker(self, **options: Unpack[WorkerOptions]) -> None:
        from tracedjobs.worker import Worker

        Worker(self, **options)  # refuse bad options before starting an event loop

        async def main() -> None:
            try:
                await self.run_worker_async(**options)
            finally:
                # Tasks may have opened the async pool in this event loop, which ends here.
                await self.connector.close_async()

        anyio.run(main)
