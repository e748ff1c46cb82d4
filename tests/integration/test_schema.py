"""Schema versions: outdated, missing, self-migrating embedded default."""

from __future__ import annotations

import pytest

import tracedjobs
from tracedjobs import migrations, sql
from tracedjobs.exceptions import SchemaError


def test_outdated_schema_names_the_command_that_fixes_it(
    app: tracedjobs.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = migrations.latest_version()
    monkeypatch.setattr(migrations, "latest_version", lambda: latest + 1)
    with pytest.raises(
        SchemaError,
        match=rf"version {latest}, this tracedjobs needs {latest + 1}: run `tracedjobs migrate`",
    ):
        app.check_schema()
    with pytest.raises(SchemaError):
        app.run_worker(wait=False, install_signal_handlers=False)


def test_missing_schema_is_reported(empty_db_url: str) -> None:
    app = tracedjobs.App(database_url=empty_db_url)
    with pytest.raises(SchemaError, match=r"do not exist.*tracedjobs migrate"):
        app.check_schema()
    assert app.migrate() == [f"{n:04d}_{name}" for n, name, _ in sql.migrations()]
    assert app.check_schema() == migrations.latest_version()
    assert app.migrate() == []
    app.close()


def test_every_query_and_migration_is_loaded() -> None:
    names = sql.queries()
    assert {"defer_jobs", "claim_jobs", "finish_jobs", "get_stalled_jobs"} <= set(names)
    assert all(body.strip() for body in names.values())
    assert [m[0] for m in sql.migrations()] == list(range(1, migrations.latest_version() + 1))


def test_defer_on_a_database_without_schema_says_to_migrate(empty_db_url: str) -> None:
    app = tracedjobs.App(database_url=empty_db_url)

    @app.task
    def anything() -> None: ...

    with pytest.raises(SchemaError, match="run `tracedjobs migrate`"):
        anything.defer()
    app.close()
