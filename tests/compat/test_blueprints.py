"""Procrastinate's app structure: blueprints, namespaces, aliases, other connectors.

From its how-to "Create modular collections of tasks by using Blueprints" and the API
reference of ``App`` and ``Blueprint``. Real PostgreSQL; real worker processes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import tracedjobs as procrastinate
from tests.helpers import WorkerProcess, query, run_cli, wait_until

APP = "tests.compat.apps.blueprint_app:app"


def test_blueprint_tasks_are_renamed_with_the_namespace() -> None:
    from tests.compat.apps import blueprint_app as m

    assert m.feed.name == "cats:feed"
    assert m.feed.aliases == ["cats:old_feed"]
    assert m.nap.name == "cats:kittens:nap"  # a blueprint added to a blueprint
    assert {"cats:feed", "cats:old_feed", "cats:kittens:nap", "cats:tick"} <= set(m.app.tasks)
    assert m.app.tasks["cats:old_feed"] is m.feed
    assert m.app.get_task("cats:old_feed") is m.feed
    assert m.feed.app is m.app and m.nap.app is m.app
    assert [p.task.name for p in m.app.periodic_registry.tasks] == ["cats:tick"]


def test_a_blueprint_task_runs_inline_but_defers_only_once_added_to_an_app() -> None:
    bp = procrastinate.Blueprint()

    @bp.task
    def double(x: int) -> int:
        return 2 * x

    assert double(3) == 6
    with pytest.raises(procrastinate.exceptions.UnboundTaskError, match="add_tasks_from"):
        double.defer(x=1)
    assert double.name.endswith("double")


def test_empty_namespace_keeps_names() -> None:
    bp = procrastinate.Blueprint()

    @bp.task(name="plain")
    def plain() -> None: ...

    app = procrastinate.App(database_url="postgresql://nobody@127.0.0.1:1/none")
    app.add_tasks_from(bp, namespace="")
    assert plain.name == "plain" and app.tasks["plain"] is plain


def test_a_taken_name_raises_and_registers_nothing() -> None:
    app = procrastinate.App(database_url="postgresql://nobody@127.0.0.1:1/none")

    @app.task(name="ns:job")
    def existing() -> None: ...

    bp = procrastinate.Blueprint()

    @bp.task(name="other")
    def other() -> None: ...

    @bp.task(name="job")
    def clash() -> None: ...

    with pytest.raises(procrastinate.exceptions.TaskAlreadyRegistered, match="ns:job"):
        app.add_tasks_from(bp, namespace="ns")
    assert set(app.tasks) == {"ns:job"}
    assert other.name == "other" and clash.name == "job"
    with pytest.raises(procrastinate.exceptions.TaskAlreadyRegistered):
        app.add_task_alias(other, "ns:job")

    @app.task(name="again")
    def first() -> None: ...

    with pytest.raises(procrastinate.exceptions.TaskAlreadyRegistered):

        @app.task(name="again")
        def second() -> None: ...


def test_worker_process_runs_blueprint_tasks_by_name_alias_and_import_path(
    db_url: str, tmp_path: Path
) -> None:
    from tests.compat.apps import blueprint_app as m

    # Jobs deferred under every name the worker must resolve: the namespaced name, an
    # alias (as code from before a rename would defer it), a nested blueprint's task and
    # a task that only the App's import_paths registers.
    producer = procrastinate.App(database_url=db_url)
    try:
        with m.app.replace_connector(procrastinate.PsycopgConnector(conninfo=db_url)):
            m.feed.defer(label="by-name")
            m.nap.defer(label="nested")
            m.app.configure_task("cats:old_feed").defer(label="configure-by-alias")
        for name, label in (("cats:old_feed", "old-name"), ("split.imported", "import-path")):

            @producer.task(name=name)
            def old() -> None: ...

            producer.configure_task(name).defer(label=label)
    finally:
        producer.close()

    result = run_cli(db_url, "worker", "--app", APP, "--one-shot")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = query(db_url, "SELECT label, value->>'task' FROM test_runs ORDER BY label")
    assert rows == [
        ("by-name", "cats:feed"),
        ("configure-by-alias", "cats:feed"),
        ("import-path", "split.imported"),
        ("nested", "cats:kittens:nap"),
        ("old-name", "cats:feed"),
    ]
    statuses = query(db_url, "SELECT DISTINCT status FROM tracedjobs_jobs")
    assert statuses == [("succeeded",)]


def test_blueprint_periodic_task_uses_procrastinate_configure_kwargs(
    db_url: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(db_url, APP, "--queue", "ticks", log_path=tmp_path / "w.log")
    try:
        wait_until(
            lambda: query(db_url, "SELECT 1 FROM test_runs WHERE label = 'tick'"),
            60,
            "a periodic tick of cats:tick to run",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.output()
    finally:
        worker.stop()
    (value,) = query(db_url, "SELECT value FROM test_runs WHERE label = 'tick' LIMIT 1")[0]
    assert value["queue"] == "ticks" and value["priority"] == 3
    assert isinstance(value["timestamp"], int)
    (task_name,) = query(db_url, "SELECT DISTINCT task_name FROM tracedjobs_jobs")[0]
    assert task_name == "cats:tick"


def test_add_task_alias_lets_old_jobs_run(db_url: str) -> None:
    old = procrastinate.App(database_url=db_url)
    new = procrastinate.App(database_url=db_url)
    ran: list[int] = []

    @old.task(name="legacy.module.add")
    def legacy_add(a: int, b: int) -> None: ...

    @new.task(name="shiny.add")
    def add(a: int, b: int) -> None:
        ran.append(a + b)

    new.add_task_alias(add, "legacy.module.add")
    assert add.aliases == ["legacy.module.add"]
    try:
        job_id = legacy_add.defer(a=1, b=2)
        new.run_worker(wait=False, install_signal_handlers=False)
        assert ran == [3]
        assert new.job_manager.get_job_status(job_id) == "succeeded"
    finally:
        old.close()
        new.close()


def test_with_connector_shares_the_registry(db_url: str, empty_db_url: str) -> None:
    app = procrastinate.App(database_url=empty_db_url)  # a database with no schema
    ran: list[str] = []

    @app.periodic(cron="0 4 * * *")
    @app.task(name="hello")
    def hello(who: str, timestamp: int = 0) -> None:
        ran.append(who)

    other = app.with_connector(procrastinate.PsycopgConnector(conninfo=db_url))
    producer = procrastinate.App(database_url=db_url)
    try:
        assert other is not app and other.tasks is app.tasks
        assert other.periodic_registry is app.periodic_registry
        producer.task(name="hello")(lambda who: None)
        producer.configure_task("hello").defer(who="there")
        other.run_worker(wait=False, install_signal_handlers=False)
        assert ran == ["there"]
        assert [j.status for j in other.job_manager.list_jobs()] == ["succeeded"]
        # As in Procrastinate, a task still defers through the App it was declared on.
        with pytest.raises(procrastinate.exceptions.SchemaError):
            hello.defer(who="original app")
    finally:
        producer.close()
        other.close()
        app.close()


def test_replace_connector_swaps_and_restores(db_url: str) -> None:
    app = procrastinate.App(database_url="postgresql://nobody@127.0.0.1:1/none")

    @app.task(name="t")
    def t() -> None: ...

    original = app.connector
    replacement = procrastinate.PsycopgConnector(conninfo=db_url)
    with app.replace_connector(replacement) as same:
        assert same is app and app.connector is replacement
        job_id = t.defer()
        assert app.job_manager.get_job_status(job_id) == "todo"
    assert app.connector is original
    replacement.close()


def test_from_path_loads_the_app() -> None:
    from tests.compat.apps import blueprint_app as m

    assert procrastinate.App.from_path("tests.compat.apps.blueprint_app.app") is m.app
    with pytest.raises(procrastinate.exceptions.ConfigurationError, match="has no attribute"):
        procrastinate.App.from_path("tests.compat.apps.blueprint_app.nope")
    with pytest.raises(procrastinate.exceptions.ConfigurationError, match="not an App"):
        procrastinate.App.from_path("tests.compat.apps.blueprint_app.cats")
