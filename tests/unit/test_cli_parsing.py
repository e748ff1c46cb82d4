"""The command line's parsing, without a database: both our shapes and Procrastinate's."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import tracedjobs
from tracedjobs.cli import build_parser
from tracedjobs.cli.base import UsageError
from tracedjobs.cli.commands import worker_options
from tracedjobs.cli.defer import check_signature, parse_arguments
from tracedjobs.exceptions import TaskNotFound


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(argv)


def test_global_options_go_before_or_after_the_subcommand() -> None:
    before = parse("--app=pkg.app", "-v", "--database-url", "postgresql://x/y", "worker")
    after = parse("worker", "--app", "pkg:app", "-v", "--database-url", "postgresql://x/y")
    for args in (before, after):
        assert args.database_url == "postgresql://x/y" and args.verbose == 1
    assert (before.app, after.app) == ("pkg.app", "pkg:app")
    # Given before and not repeated after, a global option keeps its value.
    assert parse("-a", "pkg.app", "jobs", "list").app == "pkg.app"
    assert parse("--app", "one:app", "defer", "--app", "two:app", "t").app == "two:app"


def test_queues_comma_separated_repeated_or_positional() -> None:
    assert worker_options(parse("worker", "-q", "a,b"))["queues"] == ["a", "b"]
    assert worker_options(parse("worker", "-q", "a", "--queue", "b", "--queues", "c"))[
        "queues"] == ["a", "b", "c"]
    assert worker_options(parse("worker", "a", "b"))["queues"] == ["a", "b"]
    assert worker_options(parse("worker", "-q", ""))["queues"] is None  # every queue
    assert worker_options(parse("worker"))["queues"] is None


def test_procrastinate_worker_flags_map_to_run_worker_keywords() -> None:
    options = worker_options(parse(
        "worker", "-n", "w1", "-c", "3", "--one-shot", "--no-listen-notify",
        "-p", "0.5", "-a", "2", "--shutdown-graceful-timeout", "7", "--delete-jobs", "successful",
    ))
    assert options["name"] == "w1" and options["concurrency"] == 3
    assert options["wait"] is False and options["listen_notify"] is False
    assert options["abort_job_polling_interval"] == 2.0
    assert options["delete_jobs"] == "successful"
    assert options["fetch_job_polling_interval"] == 0.5
    assert options["shutdown_graceful_timeout"] == 7.0
    # Our spellings land in the same place; unset Procrastinate-only options are not passed.
    ours = worker_options(parse("worker", "--polling-interval", "2s", "--shutdown-timeout", "1m",
                                "--heartbeat-interval", "1", "--stalled-timeout", "5", "-w"))
    assert ours["fetch_job_polling_interval"] == 2.0
    assert ours["shutdown_graceful_timeout"] == 60.0
    assert ours["update_heartbeat_interval"] == 1.0 and ours["stalled_worker_timeout"] == 5.0
    assert ours["wait"] is True and ours["listen_notify"] is True
    assert "abort_job_polling_interval" not in ours and "delete_jobs" not in ours
    assert ours["prefetch"] == 0  # by default, as Procrastinate (which has no prefetch)
    assert worker_options(parse("worker", "--prefetch", "20"))["prefetch"] == 20
    with pytest.raises(UsageError, match="must be at least 0"):
        parse("worker", "--prefetch", "-1")


def test_defer_scheduling_flags() -> None:
    at = parse("defer", "t", "--at", "2030-01-02T03:04:05")
    assert at.schedule_at == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert parse("defer", "t", "--in", "90").schedule_in == 90.0
    assert parse("defer", "t", "--in", "2m").schedule_in == 120.0
    assert parse("defer", "t", "-i", "--unknown").ignore_already_enqueued is True
    with pytest.raises(UsageError, match="not allowed with argument"):
        parse("defer", "t", "--at", "2030-01-02", "--in", "5")
    with pytest.raises(UsageError, match="ISO 8601"):
        parse("defer", "t", "--at", "tomorrow")


def test_schema_actions() -> None:
    assert parse("schema").action == "apply"
    assert parse("schema", "--apply").action == "apply"
    assert parse("schema", "--read").action == "read"
    assert parse("shell", "list_jobs", "status=failed").shell_command == [
        "list_jobs", "status=failed"]


def _app() -> tracedjobs.App:
    app = tracedjobs.App(database_url="postgresql://nobody@127.0.0.1:1/never")  # never used

    @app.task(name="myapp.tasks.send_email", pass_context=True)
    async def send_email(context: tracedjobs.JobContext, to: str, copies: int = 1) -> None: ...

    @app.task(name="myapp.a.report")
    def report_a(day: str) -> None: ...

    @app.task(name="myapp.b.report")
    def report_b(day: str) -> None: ...

    return app


def test_task_names_resolve_by_full_or_unambiguous_short_name() -> None:
    app = _app()
    assert app.get_task("myapp.tasks.send_email").name == "myapp.tasks.send_email"
    assert app.get_task("send_email").name == "myapp.tasks.send_email"
    with pytest.raises(TaskNotFound, match=r"ambiguous.*myapp\.a\.report, myapp\.b\.report"):
        app.get_task("report")
    with pytest.raises(TaskNotFound, match="no task named 'nothing'"):
        app.get_task("nothing")
    with pytest.raises(TaskNotFound):
        app.get_task("email")  # a short name is the whole last part


def test_arguments_as_json_or_key_value_pairs() -> None:
    task = _app().get_task("send_email")
    assert parse_arguments([]) == {}
    assert parse_arguments(['{"to": "a@b.c", "copies": 2}']) == {"to": "a@b.c", "copies": 2}
    assert parse_arguments(["to=a@b.c", "copies=2"], task) == {"to": "a@b.c", "copies": 2}
    # A parameter annotated str keeps its text even when it reads as JSON.
    assert parse_arguments(["to=007"], task) == {"to": "007"}
    assert parse_arguments(["n=007x", "flags=[1,2]", "x=null"]) == {
        "n": "007x", "flags": [1, 2], "x": None}
    for bad, message in ((["{nope"], "not valid JSON"), (["[1]"], "JSON object"),
                         (["to=a", "oops"], "not key=value")):
        with pytest.raises(UsageError, match=message):
            parse_arguments(bad, task)


def test_arguments_are_checked_against_the_signature() -> None:
    app = _app()
    send_email = app.get_task("send_email")
    check_signature(send_email, {"to": "a@b.c"})  # pass_context: the context is not counted
    with pytest.raises(UsageError, match="has no argument 'too' \\(it takes: to, copies\\)"):
        check_signature(send_email, {"too": "a@b.c"})
    with pytest.raises(UsageError, match="missing a required argument: 'day'"):
        check_signature(app.get_task("myapp.a.report"), {})


def test_the_embedded_home_is_the_projects_from_any_of_its_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracedjobs import embedded

    monkeypatch.delenv("TRACEDJOBS_HOME", raising=False)
    project = tmp_path / "proj"
    deep = project / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    for start in (project, deep):
        where = embedded.locate(start)
        assert where.home == project.resolve() / ".tracedjobs"
        assert "pyproject.toml" in where.reason
    # An existing .tracedjobs nearer than the project root wins (a sub-project of its own).
    (project / "src" / ".tracedjobs").mkdir()
    assert embedded.locate(deep).home == project.resolve() / "src" / ".tracedjobs"
    # A git checkout without pyproject.toml is a project too.
    repo = tmp_path / "repo"
    (repo / "a").mkdir(parents=True)
    (repo / ".git").write_text("gitdir: elsewhere")  # a worktree's .git is a file
    assert embedded.locate(repo / "a").home == repo.resolve() / ".tracedjobs"
    # TRACEDJOBS_HOME still overrides.
    monkeypatch.setenv("TRACEDJOBS_HOME", str(tmp_path / "mine"))
    assert embedded.locate(deep).home == (tmp_path / "mine").resolve()
    assert embedded.locate(deep).reason == "$TRACEDJOBS_HOME"


def test_outside_any_project_the_home_is_a_user_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracedjobs import embedded

    monkeypatch.delenv("TRACEDJOBS_HOME", raising=False)
    monkeypatch.setattr(embedded, "PROJECT_MARKERS", ("no-such-marker-anywhere",))
    where = embedded.locate(tmp_path)
    assert "user default" in where.reason
    assert not where.home.is_relative_to(tmp_path)
    assert where.home.name == "tracedjobs"


def test_every_option_has_procrastinates_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACEDJOBS_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("TRACEDJOBS_WORKER_PREFETCH", "8")
    monkeypatch.setenv("TRACEDJOBS_WORKER_QUEUES", "a,b")
    monkeypatch.setenv("TRACEDJOBS_WORKER_WAIT", "f")
    monkeypatch.setenv("TRACEDJOBS_WORKER_LISTEN_NOTIFY", "0")
    monkeypatch.setenv("TRACEDJOBS_WORKER_DELETE_JOBS", "always")
    monkeypatch.setenv("TRACEDJOBS_DEFER_UNKNOWN", "1")
    monkeypatch.setenv("TRACEDJOBS_DEFER_JSON_ARGS", '{"a": 1}')
    monkeypatch.setenv("TRACEDJOBS_DEFER_IN", "90")
    monkeypatch.setenv("TRACEDJOBS_VERBOSE", "1")
    options = worker_options(parse("worker"))
    assert (options["concurrency"], options["queues"], options["wait"],
            options["listen_notify"], options["delete_jobs"]) == (4, ["a", "b"], False, False,
                                                                  "always")
    assert options["prefetch"] == 8
    assert worker_options(parse("worker", "-c", "2", "--wait"))["concurrency"] == 2  # CLI wins
    assert worker_options(parse("worker", "--wait"))["wait"] is True
    defer = parse("defer", "t")
    assert defer.unknown is True and defer.arguments == ['{"a": 1}'] and defer.schedule_in == 90
    assert parse("defer", "t", "x=1").arguments == ["x=1"]
    assert parse("jobs", "list").verbose == 1
    monkeypatch.setenv("TRACEDJOBS_WORKER_CONCURRENCY", "zero")
    with pytest.raises(UsageError, match=r"\$TRACEDJOBS_WORKER_CONCURRENCY='zero'"):
        parse("worker")
    monkeypatch.setenv("TRACEDJOBS_WORKER_CONCURRENCY", "")  # empty means unset
    monkeypatch.setenv("TRACEDJOBS_DEFER_UNKNOWN", "maybe")
    with pytest.raises(UsageError, match="is not a boolean"):
        parse("defer", "t")


def test_database_url_moves_the_apps_connector_and_keeps_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--database-url`` points the app elsewhere without dropping what its connector was
    built with: JSON codecs (jobs' args would decode differently) and connection arguments
    (prepared statements kept behind PgBouncer >= 1.21)."""
    from tracedjobs.cli.base import use_database

    monkeypatch.setenv("TRACEDJOBS_SESSION_DATABASE_URL", "postgresql://direct/jobs")
    app = tracedjobs.App(
        connector=tracedjobs.PsycopgConnector(
            conninfo="postgresql://bouncer/jobs",
            json_loads=lambda text: ("decoded", text),
            kwargs={"prepare_threshold": 5},
            max_size=4,
        )
    )
    use_database(app, "postgresql://other/jobs")
    assert app.connector.url == "postgresql://other/jobs"
    assert app.connector.json_loads("{}") == ("decoded", "{}")
    assert app.connector.pool_args == {"kwargs": {"prepare_threshold": 5}, "max_size": 4}
    assert app.connector._session_url() == "postgresql://direct/jobs"
    assert app.job_manager.connector is app.connector
