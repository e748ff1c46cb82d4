"""The App: configuration, the task registry, and the entry points to workers."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack

import anyio

from tracedjobs import periodic as periodic_mod
from tracedjobs.blueprints import Blueprint
from tracedjobs.connector import PsycopgConnector
from tracedjobs.exceptions import ConfigurationError, TaskNotFound
from tracedjobs.manager import JobManager
from tracedjobs.middleware import TaskMiddleware
from tracedjobs.tasks import JobDeferrer, Task

if TYPE_CHECKING:
    from tracedjobs.worker import WorkerOptions

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
TraceParent = Literal["link", "parent"]


class App(Blueprint):
    """A tracedjobs application: where the database is and which tasks exist.

    ``App()`` uses ``$TRACEDJOBS_DATABASE_URL``, else an embedded PostgreSQL.
    ``App(connector=PsycopgConnector(conninfo=...))`` is accepted as in Procrastinate.
    ``trace_parent="parent"`` makes each attempt's span a child of the producer span
    instead of linking to it. Task arguments are never put on spans unless
    ``record_args=True``.
    """

    # Task middleware every worker of this app runs outermost, before the worker's own: an
    # integration's (DjangoApp closes Django's connections around each sync task).
    task_middleware: tuple[TaskMiddleware, ...] = ()

    def __init__(
        self,
        *,
        database_url: str | None = None,
        connector: PsycopgConnector | None = None,
        trace_parent: TraceParent = "link",
        record_args: bool = False,
        import_paths: list[str] | None = None,
        worker_defaults: dict[str, Any] | None = None,
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
        # Options every run_worker call starts from (Procrastinate's worker_defaults).
        self.worker_defaults: dict[str, Any] = dict(worker_defaults or {})
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_registry = periodic_mod.PeriodicRegistry()
        self.job_manager = JobManager(self.connector)
        self._schema_checked = False

    # -- tasks -------------------------------------------------------------------------
    # task(), periodic(), add_task_alias() and add_tasks_from() come from Blueprint.

    def _task_owner(self) -> App:
        return self

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

    def configure_task(
        self, name: str, *, allow_unknown: bool = True, **options: Any
    ) -> JobDeferrer:
        """Defer a task by name (Procrastinate's ``app.configure_task``). As there, a name
        this app does not know is deferred anyway (a worker that knows it runs it), unless
        ``allow_unknown=False``."""
        try:
            task = self.get_task(name)
        except TaskNotFound:
            if not allow_unknown:
                raise
            task = self.unknown_task(name)
        return task.configure(**options)

    def unknown_task(self, name: str) -> Task[Any, Any]:
        """A stand-in for a task this app does not import: only its name is deferred."""

        def unknown(**kwargs: Any) -> None:  # never called: the worker that knows it runs it
            raise NotImplementedError(name)

        return Task(unknown, app=self, name=name)

    # -- connections -------------------------------------------------------------------

    def open(self, pool: Any = None) -> App:
        """Open the connector now (optional: it opens on first use) and return the App.

        As in Procrastinate: ``app.open()`` … ``app.close()``, or ``with app.open():``
        (closed on exit). ``pool``: a psycopg ``ConnectionPool`` of yours (left open).
        """
        self.connector.open(pool)
        return self

    def open_async(self, pool: Any = None) -> _OpenAsync:
        """The async twin of :meth:`open`: ``await app.open_async()`` … ``await
        app.close_async()``, or ``async with app.open_async():`` (``pool``: an
        ``AsyncConnectionPool`` of yours)."""
        return _OpenAsync(self, pool)

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

        self.perform_import_paths()
        worker = Worker(self, **self._worker_options(options))
        await anyio.to_thread.run_sync(self.check_schema)
        await worker.run()

    def run_worker(self, **options: Unpack[WorkerOptions]) -> None:
        from tracedjobs.worker import Worker

        Worker(self, **self._worker_options(options))  # refuse bad options before a loop starts

        async def main() -> None:
            try:
                await self.run_worker_async(**options)
            finally:
                # Tasks may have opened the async pool in this event loop, which ends here.
                await self.connector.close_async()

        anyio.run(main)

    # -- another connector, import paths (Procrastinate's App API) ----------------------

    @classmethod
    def from_path(cls, dotted_path: str) -> App:
        """The App at ``"package.module.app"`` (or ``"package.module:app"``)."""
        from tracedjobs.utils import import_object

        app = import_object(dotted_path)
        if not isinstance(app, cls):
            raise ConfigurationError(f"{dotted_path!r} is a {type(app).__name__}, not an App")
        return app

    def with_connector(self, connector: PsycopgConnector) -> App:
        """Another App on ``connector`` sharing this one's tasks and periodic schedules.

        As in Procrastinate, tasks still defer through the App they were declared on;
        prefer ``replace_connector``.
        """
        app = type(self)(
            connector=connector,
            trace_parent=self.trace_parent,
            record_args=self.record_args,
            import_paths=self.import_paths,
            worker_defaults=self.worker_defaults,
        )
        app.tasks = self.tasks
        app.periodic_registry = self.periodic_registry
        return app

    @contextlib.contextmanager
    def replace_connector(self, connector: PsycopgConnector) -> Iterator[App]:
        """Use ``connector`` (e.g. ``tracedjobs.testing.InMemoryConnector()``) inside the block."""
        saved = self.connector, self.job_manager
        self.connector, self.job_manager = connector, JobManager(connector)
        try:
            yield self
        finally:
            self.connector, self.job_manager = saved

    def _worker_options(self, options: WorkerOptions) -> WorkerOptions:
        """``worker_defaults`` overridden by this call's options."""
        merged: WorkerOptions = {**self.worker_defaults, **options}  # type: ignore[typeddict-item]
        return merged

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def perform_import_paths(self) -> None:
        """Import the modules named in ``import_paths`` (so their tasks are registered)."""
        for path in self.import_paths:
            try:
                importlib.import_module(path)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import {path!r} from the App's import_paths: {exc}"
                ) from exc
        logger.debug(
            "tasks imported", extra={"action": "imported_tasks", "tasks": list(self.tasks)}
        )


class _OpenAsync:
    """What ``app.open_async()`` returns: awaitable, and an async context manager."""

    def __init__(self, app: App, pool: Any) -> None:
        self._app, self._pool = app, pool

    def __await__(self) -> Generator[Any, None, App]:
        return self._open().__await__()

    async def _open(self) -> App:
        await self._app.connector.open_async(self._pool)
        return self._app

    async def __aenter__(self) -> App:
        return await self._open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._app.connector.close_async()
