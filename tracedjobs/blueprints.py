"""Blueprints: collections of tasks declared before (or apart from) the App that runs them.

``App`` is itself a Blueprint, as in Procrastinate: registering a task, a periodic schedule,
an alias or another blueprint's tasks works the same on both. A task declared on a blueprint
can be called inline at once but deferred only once its blueprint has been added to an App
(``app.add_tasks_from(blueprint, namespace="ns")`` names it ``ns:<name>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, Unpack, cast, overload

from tracedjobs import periodic as periodic_mod
from tracedjobs.exceptions import ConfigurationError, TaskAlreadyRegistered, UnboundTaskError
from tracedjobs.tasks import Task, TaskOptions

if TYPE_CHECKING:
    from tracedjobs.app import App

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Options of ``Task.configure`` that Procrastinate's ``periodic(**configure_kwargs)`` takes;
# any other keyword is a task argument (tracedjobs' own shorthand).
_PERIODIC_CONFIGURE = frozenset({"queue", "priority", "lock", "queueing_lock", "task_kwargs"})
_PERIODIC_IGNORED = frozenset({"schedule_at", "schedule_in"})


def add_namespace(name: str, namespace: str) -> str:
    """``ns:name`` (an empty namespace leaves the name alone), as Procrastinate names them."""
    return f"{namespace}:{name}" if namespace else name


class _Unbound:
    """Stands in for the App of a task whose blueprint is not added to an App yet."""

    def __init__(self, blueprint: Blueprint) -> None:
        self._blueprint = blueprint

    def __getattr__(self, name: str) -> NoReturn:
        raise UnboundTaskError(
            "this task belongs to a Blueprint that is not added to an App yet: call "
            "app.add_tasks_from(blueprint, namespace=...) before deferring it"
        )


class Blueprint:
    """Tasks and periodic schedules registered now, added to an App later.

    ``blueprint.task``/``periodic`` take the same options as ``App.task``/``App.periodic``.
    """

    def __init__(self) -> None:
        # Every name a task answers to (its name and its aliases) is a key here, so a
        # worker looking a job's task name up in ``app.tasks`` finds aliases too.
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_registry = periodic_mod.PeriodicRegistry()

    def _task_owner(self) -> App:
        """The App tasks declared here defer through (a placeholder until bound)."""
        return cast("App", _Unbound(self))

    # -- tasks -------------------------------------------------------------------------

    @overload
    def task(self, func: F, /) -> Task[Any, Any]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        aliases: list[str] | None = None,
        **options: Unpack[TaskOptions],
    ) -> Callable[[F], Task[Any, Any]]: ...

    def task(
        self,
        func: Any = None,
        /,
        *,
        aliases: list[str] | None = None,
        **options: Unpack[TaskOptions],
    ) -> Any:
        """Register a function (sync or async) as a task: ``@app.task(queue="emails", retry=5)``.

        ``aliases`` are more names the task answers to (e.g. its name before a rename:
        jobs deferred under the old name still run).
        """

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(f, app=self._task_owner(), **options)
            task.aliases = list(aliases or [])
            names = [task.name, *task.aliases]
            if len(set(names)) != len(names):
                raise TaskAlreadyRegistered(f"task {task.name!r} lists the same name twice")
            for one in names:
                self._check_free(one, f)
            for one in names:
                self.tasks[one] = task
            return task

        return register(func) if func is not None else register

    def _check_free(self, name: str, func: Any = None) -> None:
        existing = self.tasks.get(name)
        # Re-importing a module re-registers the same function: that is not a clash.
        if existing is not None and (func is None or existing.func is not func):
            raise TaskAlreadyRegistered(f"a task named {name!r} is already registered")

    def add_task_alias(self, task: Task[Any, Any], alias: str) -> None:
        """Make ``task`` answer to ``alias`` too (e.g. its name before it moved)."""
        self._check_free(alias)
        self.tasks[alias] = task
        if alias not in task.aliases:
            task.aliases.append(alias)

    def add_tasks_from(self, blueprint: Blueprint, *, namespace: str) -> None:
        """Take over every task and periodic schedule of ``blueprint``, named ``namespace:…``.

        The tasks are renamed (their aliases too) and now defer through this blueprint's
        App. Raises TaskAlreadyRegistered, changing nothing, if a name is taken.
        """
        renamed = {add_namespace(key, namespace): task for key, task in blueprint.tasks.items()}
        taken = sorted(set(renamed) & set(self.tasks))
        if taken:
            raise TaskAlreadyRegistered(
                f"cannot add tasks with namespace {namespace!r}: "
                f"{', '.join(map(repr, taken))} already registered"
            )
        for task in {id(t): t for t in blueprint.tasks.values()}.values():
            task.name = add_namespace(task.name, namespace)
            task.aliases = [add_namespace(a, namespace) for a in task.aliases]
            task.app = self._task_owner()
        blueprint.tasks = renamed
        self.tasks.update(renamed)
        for periodic in blueprint.periodic_registry.tasks:
            self.periodic_registry.add(periodic)
        logger.info(
            "added tasks from a blueprint",
            extra={
                "action": "loading_blueprint",
                "namespace": namespace,
                "tasks": sorted({t.name for t in renamed.values()}),
            },
        )

    # -- periodic ----------------------------------------------------------------------

    def periodic(
        self, *, cron: str, periodic_id: str = "", **kwargs: Any
    ) -> Callable[[Task[Any, Any]], Task[Any, Any]]:
        """Defer the task on a cron schedule (5 fields, or 6 with seconds last).

        Keywords are Procrastinate's ``Task.configure`` options (``queue``, ``priority``,
        ``lock``, ``queueing_lock``, ``task_kwargs``); any other keyword is a task argument.
        Each tick passes ``timestamp`` (the tick's epoch seconds) to the task.
        """
        schedule = periodic_mod.parse_cron(cron)
        configure = {k: v for k, v in kwargs.items() if k in _PERIODIC_CONFIGURE}
        task_kwargs = {
            **(configure.pop("task_kwargs", None) or {}),
            **{k: v for k, v in kwargs.items() if k not in _PERIODIC_CONFIGURE | _PERIODIC_IGNORED},
        }

        def register(task: Task[Any, Any]) -> Task[Any, Any]:
            if not isinstance(task, Task):
                raise ConfigurationError(
                    "@app.periodic must be stacked above @app.task (it takes a Task)"
                )
            self.periodic_registry.add(
                periodic_mod.PeriodicTask(
                    task=task,
                    cron=cron,
                    schedule=schedule,
                    periodic_id=periodic_id,
                    kwargs=task_kwargs,
                    configure=configure,
                )
            )
            return task

        return register
