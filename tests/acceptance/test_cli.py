"""The command line: each command works, and bad input gives one line, never a traceback."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import WorkerProcess, run_cli, scalar
from tracedjobs import migrations


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_everywhere(db_url: str) -> None:
    for args in (
        [],
        ["worker"],
        ["defer"],
        ["jobs"],
        ["jobs", "list"],
        ["jobs", "show"],
        ["jobs", "retry"],
        ["jobs", "cancel"],
        ["stalled"],
        ["prune"],
        ["migrate"],
        ["schema"],
        ["healthchecks"],
        ["shell"],
        ["db"],
        ["demo"],
        ["top"],
    ):
        result = run_cli(db_url, *args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "usage: tracedjobs" in result.stdout


def test_defer_list_show_and_worker_round_trip(db_url: str, tmp_path) -> None:
    result = run_cli(db_url, "defer", "--app", "tests.apps.basic:app", "record", '{"label": "cli"}')
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip())

    listed = run_cli(db_url, "jobs", "list", "--json")
    assert listed.returncode == 0
    [job] = json.loads(listed.stdout)
    assert (job["id"], job["task_name"], job["status"], job["args"]) == (
        job_id,
        "record",
        "todo",
        {"label": "cli"},
    )

    worker = WorkerProcess(
        db_url, "tests.apps.basic:app", "--one-shot", log_path=tmp_path / "w.log"
    )
    assert worker.wait(60) == 0, worker.output()
    worker.stop()
    assert scalar(db_url, "SELECT label FROM test_runs") == "cli"

    shown = run_cli(db_url, "jobs", "show", str(job_id))
    assert shown.returncode == 0
    for text in ("succeeded", "events", "deferred", "started", "attempts", "#1"):
        assert text in shown.stdout
    as_json = json.loads(run_cli(db_url, "jobs", "show", str(job_id), "--json").stdout)
    assert [e["type"] for e in as_json["events"]] == ["deferred", "started", "succeeded"]
    assert as_json["attempt_records"][0]["outcome"] == "succeeded"

    filtered = json.loads(run_cli(db_url, "jobs", "list", "--status", "todo", "--json").stdout)
    assert filtered == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["defer", "--app", "tests.apps.basic:app", "no_such_task"],
            ["no task named 'no_such_task'"],
        ),
        (["defer", "--app", "tests.apps.basic:app", "record", "{not json"], ["not valid JSON"]),
        (["defer", "--app", "tests.apps.basic:app", "record", "[1, 2]"], ["JSON object"]),
        (["defer", "record", "{}"], ["needs --app"]),
        (["defer", "--app", "tests.apps.nope:app", "record"], ["cannot import module"]),
        (["defer", "--app", "tests.apps.basic:nothing", "record"], ["has no attribute"]),
        (["defer", "--app", "tests.apps.basic:record", "record"], ["not a tracedjobs.App"]),
        (["defer", "--app", "tests.apps.basic:app", "record", "--in", "soon"], ["not a duration"]),
        (["worker"], ["needs --app"]),
        (["worker", "--app", "tests.apps.basic:app", "--concurrency", "0"], ["at least 1"]),
        (
            ["worker", "--app", "tests.apps.basic:app", "--heartbeat-interval", "x"],
            ["not a duration"],
        ),
        (["jobs", "show", "999999"], ["no job with id 999999"]),
        (["jobs", "show", "abc"], ["invalid int value"]),
        (["jobs", "list", "--status", "bogus"], ["invalid choice"]),
        (["jobs", "retry"], ["give job ids, or --failed"]),
        (["jobs", "retry", "999999"], ["no job with id 999999"]),
        (["jobs", "cancel", "999999"], ["no job with id 999999"]),
        (["jobs", "retry", "--failed", "--since", "yesterday-ish"], ["neither a duration"]),
        (["prune", "--older-than", "forever"], ["not a duration"]),
        (["prune"], ["required"]),
        (["nonsense"], ["invalid choice"]),
        (["db", "explode"], ["invalid choice"]),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(
    db_url: str, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(run_cli(db_url, *args), *fragments)


def test_bad_database_url_is_one_line() -> None:
    result = run_cli("postgresql://nobody@127.0.0.1:1/nothing", "jobs", "list")
    assert_one_line_error(result, "cannot connect to postgresql://nobody@127.0.0.1:1/nothing")
    result = run_cli("mysql://user:secret@host/db", "jobs", "list")
    assert_one_line_error(result, "not a PostgreSQL URL")
    assert "secret" not in result.stderr


def test_password_never_shown_in_connection_errors() -> None:
    result = run_cli("postgresql://user:hunter2@127.0.0.1:1/db", "jobs", "list")
    assert_one_line_error(result, "cannot connect")
    assert "hunter2" not in result.stderr and "***" in result.stderr


def test_worker_refuses_a_database_without_schema(empty_db_url: str) -> None:
    result = run_cli(empty_db_url, "worker", "--app", "tests.apps.basic:app", "--one-shot")
    assert_one_line_error(result, "run `tracedjobs migrate`")
    result = run_cli(empty_db_url, "jobs", "list")
    assert_one_line_error(result, "run `tracedjobs migrate`")


def test_worker_refuses_a_schema_newer_than_itself(db_url: str) -> None:
    scalar(
        db_url,
        "INSERT INTO tracedjobs_migrations (version, name) VALUES (99, 'future') RETURNING 1",
    )
    result = run_cli(db_url, "worker", "--app", "tests.apps.basic:app", "--one-shot")
    assert_one_line_error(result, "newer than this tracedjobs", "upgrade tracedjobs")


def test_migrate_is_idempotent(empty_db_url: str) -> None:
    first = run_cli(empty_db_url, "migrate")
    assert first.returncode == 0 and "applied 0001_initial" in first.stdout
    second = run_cli(empty_db_url, "migrate")
    latest = migrations.latest_version()
    assert second.returncode == 0 and f"up to date (version {latest})" in second.stdout
    assert scalar(empty_db_url, "SELECT count(*) FROM tracedjobs_migrations") == latest


def test_concurrent_migrations_do_not_collide(empty_db_url: str) -> None:
    import sys

    from tests.helpers import ROOT, cli_env

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tracedjobs.cli", "migrate"],
            env=cli_env(empty_db_url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert sum("applied" in out for out, _err in results) == 1
    assert scalar(empty_db_url, "SELECT max(version) FROM tracedjobs_migrations") == migrations.latest_version()


def test_retry_and_cancel_print_json(db_url: str) -> None:
    from tests.helpers import query

    query(
        db_url,
        "INSERT INTO tracedjobs_jobs (id, queue_name, task_name, status) VALUES "
        "(1, 'default', 'record', 'failed'), (2, 'default', 'record', 'todo'), "
        "(3, 'default', 'record', 'succeeded')",
    )
    retried = run_cli(db_url, "jobs", "retry", "1", "3", "--json")
    data = json.loads(retried.stdout)
    assert data["retried"] == [1] and [e["id"] for e in data["errors"]] == [3]
    assert retried.returncode == 1 and retried.stderr == ""

    cancelled = run_cli(db_url, "jobs", "cancel", "1", "2", "3", "--json")
    assert json.loads(cancelled.stdout) == [
        {"id": 1, "changed": True, "status": "cancelled"},
        {"id": 2, "changed": True, "status": "cancelled"},
        {"id": 3, "changed": False, "status": "succeeded"},
    ]
    assert cancelled.returncode == 1
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'cancelled'") == 2


def test_prune_deletes_old_finished_jobs_and_keeps_failed_ones_unless_asked(db_url: str) -> None:
    from tests.helpers import query

    query(
        db_url,
        "INSERT INTO tracedjobs_jobs (id, queue_name, task_name, status, updated_at) VALUES "
        "(1, 'q', 't', 'succeeded', now() - interval '8 days'), "
        "(2, 'q', 't', 'cancelled', now() - interval '8 days'), "
        "(3, 'q', 't', 'failed',    now() - interval '8 days'), "
        "(4, 'q', 't', 'todo',      now() - interval '8 days'), "
        "(5, 'q', 't', 'succeeded', now() - interval '1 hour')",
    )
    query(db_url, "INSERT INTO tracedjobs_events (job_id, type) VALUES (1, 'succeeded'), (5, 'succeeded')")
    result = run_cli(db_url, "prune", "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    assert "deleted 2 finished job(s)" in result.stdout
    assert [r[0] for r in query(db_url, "SELECT id FROM tracedjobs_jobs ORDER BY id")] == [3, 4, 5]
    assert [r[0] for r in query(db_url, "SELECT job_id FROM tracedjobs_events")] == [5]

    result = run_cli(db_url, "prune", "--older-than", "7d", "--include-failed")
    assert result.returncode == 0 and "deleted 1 finished job(s)" in result.stdout
    assert [r[0] for r in query(db_url, "SELECT id FROM tracedjobs_jobs ORDER BY id")] == [4, 5]
