"""Procrastinate's documented command lines, run as `tracedjobs` subprocesses.

From its how-tos (command_line, worker, defer, schedule, priorities, queueing_locks,
concurrency, connections, delete_finished_jobs, monitoring) with ``procrastinate``
replaced by ``tracedjobs``. Real PostgreSQL, real worker processes.
"""

from __future__ import annotations

import datetime

from tests.helpers import query, run_cli, scalar

APP = "tests.compat.apps.cli_app.app"  # Procrastinate's dotted form


def ok(db_url: str, *args: str, **env: str) -> str:
    result = run_cli(db_url, *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def jobs(db_url: str) -> list[tuple]:
    return query(
        db_url,
        "SELECT task_name, args, queue_name, priority, status FROM tracedjobs_jobs ORDER BY id",
    )


def test_defer_with_json_arguments_and_tracedjobs_app(db_url: str) -> None:
    """howto/basics/defer ("From the command line"); PROCRASTINATE_APP's twin."""
    out = ok(db_url, "defer", "my_module.my_task", '{"a": 1, "b": 2}', TRACEDJOBS_APP=APP)
    assert int(out.strip()) > 0
    assert jobs(db_url) == [("my_module.my_task", {"a": 1, "b": 2}, "some_queue", 0, "todo")]


def test_worker_concurrency_and_one_shot(db_url: str) -> None:
    """howto/production/concurrency: ``worker --concurrency=30``."""
    ok(db_url, "defer", "my_module.my_task", '{"a": 1, "b": 2}', TRACEDJOBS_APP=APP)
    ok(db_url, "worker", "--concurrency=30", "--one-shot", TRACEDJOBS_APP=APP)
    assert [j[-1] for j in jobs(db_url)] == ["succeeded"]


def test_app_and_verbose_before_the_subcommand(db_url: str) -> None:
    """howto/basics/command_line: ``procrastinate --app=dotted.path.to.app worker``."""
    ok(db_url, "--app=" + APP, "defer", "my_module.my_task", '{"a": 1, "b": 2}')
    ok(db_url, "--verbose", "--app=" + APP, "worker", "--one-shot")
    assert [j[-1] for j in jobs(db_url)] == ["succeeded"]


def test_worker_queues_comma_separated_and_name(db_url: str) -> None:
    """howto/basics/worker: ``worker --name=worker-name`` with queues ``-q a,b``."""
    for queue in ("a", "b", "c"):
        ok(db_url, "defer", "--queue", queue, "my_module.my_task", "{}", TRACEDJOBS_APP=APP)
    ok(db_url, "worker", "--name=worker-name", "-q", "a,b", "--one-shot", TRACEDJOBS_APP=APP)
    assert [(j[2], j[-1]) for j in jobs(db_url)] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("c", "todo"),
    ]


def test_worker_listen_notify_and_delete_jobs_options(db_url: str) -> None:
    """howto/production/connections, howto/production/delete_finished_jobs."""
    ok(db_url, "defer", "my_module.my_task", "{}", TRACEDJOBS_APP=APP)
    ok(
        db_url,
        "worker",
        "--no-listen-notify",
        "--delete-jobs=always",
        "--one-shot",
        TRACEDJOBS_APP=APP,
    )
    assert jobs(db_url) == []


def test_defer_priority(db_url: str) -> None:
    """howto/advanced/priorities: ``defer --priority=5 path.to.my_task``."""
    ok(db_url, "defer", "--priority=5", "my_module.my_task", TRACEDJOBS_APP=APP)
    assert [j[3] for j in jobs(db_url)] == [5]


def test_defer_at(db_url: str) -> None:
    """howto/advanced/schedule: ``defer --at=2038-01-19T03:14:07Z ...``."""
    ok(
        db_url,
        "defer",
        "--at=2038-01-19T03:14:07Z",
        "my_module.my_task",
        '{"a": 1, "b": 2}',
        TRACEDJOBS_APP=APP,
    )
    at = scalar(db_url, "SELECT scheduled_at FROM tracedjobs_jobs")
    assert at == datetime.datetime(2038, 1, 19, 3, 14, 7, tzinfo=datetime.UTC)


def test_defer_in_seconds(db_url: str) -> None:
    """howto/advanced/schedule: ``defer --in=5400 path.to.clean``."""
    ok(db_url, "defer", "--in=5400", "my_module.my_task", TRACEDJOBS_APP=APP)
    delay = scalar(db_url, "SELECT extract(epoch FROM scheduled_at - now()) FROM tracedjobs_jobs")
    assert 5300 < float(delay) <= 5400


def test_defer_queueing_lock_ignore_already_enqueued(db_url: str) -> None:
    """howto/advanced/queueing_locks and cron: ``--queueing-lock=... --ignore-already-enqueued``."""
    for _ in range(2):
        ok(
            db_url,
            "defer",
            "--queueing-lock=maintenance",
            "--ignore-already-enqueued",
            "my_module.my_task",
            TRACEDJOBS_APP=APP,
        )
    assert len(jobs(db_url)) == 1
    again = run_cli(
        db_url, "defer", "--queueing-lock=maintenance", "my_module.my_task", TRACEDJOBS_APP=APP
    )
    assert again.returncode != 0 and "Traceback" not in again.stderr


def test_defer_unknown_task(db_url: str) -> None:
    """howto/basics/defer: ``defer --unknown my_module.other_task '{...}'``."""
    ok(db_url, "defer", "--unknown", "elsewhere.task", '{"a": 1}', TRACEDJOBS_APP=APP)
    ok(db_url, "defer", "elsewhere.task", "{}", TRACEDJOBS_APP=APP, TRACEDJOBS_DEFER_UNKNOWN="1")
    assert [j[0] for j in jobs(db_url)] == ["elsewhere.task", "elsewhere.task"]


def test_module_schema_healthchecks_and_shell(empty_db_url: str) -> None:
    """howto/basics/command_line (``python -m``), quickstart (``schema --apply``),
    howto/production/monitoring (``healthchecks``, ``shell list_jobs``)."""
    import subprocess
    import sys

    from tests.helpers import ROOT, cli_env

    module = subprocess.run(
        [sys.executable, "-m", "tracedjobs", "--help"],
        env=cli_env(empty_db_url),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert module.returncode == 0, module.stderr
    ok(empty_db_url, "schema", "--apply", TRACEDJOBS_APP=APP)
    assert "tracedjobs_jobs" in ok(empty_db_url, "schema", "--read", TRACEDJOBS_APP=APP)
    ok(empty_db_url, "healthchecks", TRACEDJOBS_APP=APP)
    ok(empty_db_url, "defer", "my_module.my_task", TRACEDJOBS_APP=APP)
    assert "my_module.my_task" in ok(empty_db_url, "shell", "list_jobs", TRACEDJOBS_APP=APP)
