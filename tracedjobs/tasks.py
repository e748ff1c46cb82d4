"""Tasks: decorated functions, and deferring jobs of them."""

from __future__ import annotations

import datetime
import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack

from tracedjobs import middleware, telemetry
from tracedjobs.middleware import TaskMiddleware
from tracedjobs.retry import BaseRetryStrategy, get_retry_strategy
from tracedjobs.utils import schedule_to_datetime

if TYPE_CHECKING:
    from tracedjobs.app import App

P = ParamSpec("P")
R = TypeVar("R")

OnLost = Literal["retry", "fail"]


class TaskOptions(TypedDict, total=False):
    """Options of ``@app.task`` (and ``@blueprint.task``), declared once."""

    name: str | None
    queue: str
    priority: int
    lock: str | None
    queueing_lock: str | None
    retry: Any  # bool, int or a BaseRetryStrategy
    pass_context: bool
    timeout: float | None
    on_lost: OnLost
    task_middleware: Sequence[TaskMiddleware] | None


class DeferOptions(TypedDict, total=False):
    """Options of ``task.configure(...)``: this defer only."""

    queue: str | None
    priority: int | None
    lock: str | None
    queueing_lock: str | None
    schedule_at: datetime.datetime | None
    schedule_in: dict[str, float] | None
    # Procrastinate's: arguments every defer starts from, and the caller's connection.
    task_kwargs: dict[str, Any] | None
    connection: Any


def dump_args(
    task_name: str, args: dict[str, Any], dumps: Callable[[Any], str] = json.dumps
) -> str:
    """JSON-encode task arguments, naming the first argument that cannot be encoded."""
    try:
        return dumps(args)
    except (TypeError, ValueError):
        pass
    for key, value in args.items():
        try:
            dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"argument {key!r} of task {task_name!r} is not JSON-serialisable "
                f"({type(value).__name__}: {exc}); pass plain JSON values (str, int, float, "
                "bool, None, list, dict)"
            ) from None
    raise TypeError(f"arguments of task {task_name!r} are not JSON-serialisable")


class JobSpec:
    """Everything needed to insert one job (built by the deferrer, written by the manager)."""

    __slots__ = (
        "args_json",
        "lock",
        "priority",
        "queue",
        "queueing_lock",
        "scheduled_at",
        "task_name",
        "traceparent",
        "tracestate",
    )

    def __init__(
        self,
        *,
        task_name: str,
        queue: str,
        args_json: str,
        priority: int,
        lock: str | None,
        queueing_lock: str | None,
        scheduled_at: datetime.datetime | None,
    ) -> None:
        self.task_name = task_name
        self.queue = queue
        self.args_json = args_json
        self.priority = priority
        self.lock = lock
        self.queueing_lock = queueing_lock
        self.scheduled_at = scheduled_at
        self.traceparent: str | None = None
        self.tracestate: str | None = None


class JobDeferrer:
    """A task with per-defer options applied (what ``task.configure(...)`` returns)."""

    def __init__(
        self,
        task: Task[Any, Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        lock: str | None = None,
        queueing_lock: str | None = None,
        schedule_at: datetime.datetime | None = None,
        schedule_in: dict[str, float] | None = None,
        task_kwargs: dict[str, Any] | None = None,
        connection: Any = None,
    ) -> None:
        self.task = task
        # Procrastinate's configure(task_kwargs=..., connection=...): arguments every defer
        # starts from, and the caller's connection (transaction) every defer uses.
        self.task_kwargs = dict(task_kwargs or {})
        self.connection = connection
        self.queue = queue or task.queue
        self.priority = task.priority if priority is None else priority
        self.lock = task.lock if lock is None else lock
        self.queueing_lock = task.queueing_lock if queueing_lock is None else queueing_lock
        self.scheduled_at = schedule_to_datetime(schedule_at, schedule_in)

    def _spec(self, kwargs: dict[str, Any]) -> JobSpec:
        """The job for one defer's ``kwargs`` (on top of ``task_kwargs``)."""
        args = {**self.task_kwargs, **kwargs}
        return JobSpec(
            task_name=self.task.name,
            queue=self.queue,
            args_json=dump_args(self.task.name, args, self.task.app.connector.json_dumps),
            priority=self.priority,
            lock=self.lock,
            queueing_lock=self.queueing_lock,
            scheduled_at=self.scheduled_at,
        )

    def _specs(self, kwargs_list: tuple[dict[str, Any], ...]) -> list[JobSpec]:
        if not kwargs_list:
            raise ValueError("batch_defer needs at least one set of arguments")
        return [self._spec(kwargs) for kwargs in kwargs_list]

    def defer(self, *, connection: Any = None, **kwargs: Any) -> int:
        """Insert one job; returns its id. With ``connection=``, inside that transaction."""
        return self._defer([self._spec(kwargs)], connection)[0]

    async def defer_async(self, *, connection: Any = None, **kwargs: Any) -> int:
        return (await self._defer_async([self._spec(kwargs)], connection))[0]

    def batch_defer(self, *kwargs_list: dict[str, Any], connection: Any = None) -> list[int]:
        """Insert several jobs in one round trip; returns their ids in order."""
        return self._defer(self._specs(kwargs_list), connection)

    async def batch_defer_async(
        self, *kwargs_list: dict[str, Any], connection: Any = None
    ) -> list[int]:
        return await self._defer_async(self._specs(kwargs_list), connection)

    def _defer(self, specs: list[JobSpec], connection: Any) -> list[int]:
        connection = self.connection if connection is None else connection
        with telemetry.send_span(self.queue, self.task.name, len(specs)) as send:
            _attach(specs, send.carrier)
            ids = self.task.app.job_manager.defer_jobs(specs, connection=connection)
            send.set_job_ids(ids)
        telemetry.record_sent(self.queue, self.task.name, len(ids))
        return ids

    async def _defer_async(self, specs: list[JobSpec], connection: Any) -> list[int]:
        connection = self.connection if connection is None else connection
        with telemetry.send_span(self.queue, self.task.name, len(specs)) as send:
            _attach(specs, send.carrier)
            ids = await self.task.app.job_manager.defer_jobs_async(specs, connection=connection)
            send.set_job_ids(ids)
        telemetry.record_sent(self.queue, self.task.name, len(ids))
        return ids


def _attach(specs: list[JobSpec], carrier: telemetry.TraceCarrier) -> None:
    for spec in specs:
        spec.traceparent, spec.tracestate = carrier.traceparent, carrier.tracestate


class Task(Generic[P, R]):
    """A function registered with ``@app.task``. Call it to run it inline; ``defer`` to queue."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        app: App,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        lock: str | None = None,
        queueing_lock: str | None = None,
        retry: Any = False,
        pass_context: bool = False,
        timeout: float | None = None,
        on_lost: OnLost = "retry",
        task_middleware: Sequence[TaskMiddleware] | None = None,
    ) -> None:
        if on_lost not in ("retry", "fail"):
            raise ValueError(f"on_lost must be 'retry' or 'fail', not {on_lost!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.func = func
        self.app = app
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        # More names the task answers to (set by Blueprint.task / add_task_alias).
        self.aliases: list[str] = []
        self.queue = queue
        self.priority = priority
        self.lock = lock
        self.queueing_lock = queueing_lock
        self.retry_strategy: BaseRetryStrategy | None = get_retry_strategy(retry)
        self.pass_context = pass_context
        self.timeout = timeout
        self.on_lost: OnLost = on_lost
        self.is_async = inspect.iscoroutinefunction(func)
        # Checked now, as in Procrastinate: a middleware of the wrong kind fails at import.
        self.task_middleware = middleware.task_middleware(
            task_middleware, task_name=self.name, is_async_task=self.is_async
        )
        functools.update_wrapper(self, func)

    @property
    def retry(self) -> BaseRetryStrategy:
        """The retry strategy (a no-retry strategy when none was given), as in Procrastinate."""
        return self.retry_strategy or _NO_RETRY

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def configure(self, **options: Unpack[DeferOptions]) -> JobDeferrer:
        """Per-defer options: schedule_at, schedule_in, priority, queue, lock, queueing_lock,
        task_kwargs (arguments every defer starts from), connection (your transaction)."""
        return JobDeferrer(self, **options)

    def defer(self, *, connection: Any = None, **kwargs: Any) -> int:
        return JobDeferrer(self).defer(connection=connection, **kwargs)

    async def defer_async(self, *, connection: Any = None, **kwargs: Any) -> int:
        return await JobDeferrer(self).defer_async(connection=connection, **kwargs)

    def batch_defer(self, *kwargs_list: dict[str, Any], connection: Any = None) -> list[int]:
        return JobDeferrer(self).batch_defer(*kwargs_list, connection=connection)

    async def batch_defer_async(
        self, *kwargs_list: dict[str, Any], connection: Any = None
    ) -> list[int]:
        return await JobDeferrer(self).batch_defer_async(*kwargs_list, connection=connection)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"


class _NoRetry(BaseRetryStrategy):
    def get_retry_decision(self, *, exception: BaseException, job: Any) -> None:
        return None


_NO_RETRY = _NoRetry()
