"""`tracedjobs shell`: Procrastinate's administration shell, its commands and output lines."""

from __future__ import annotations

import subprocess

import pytest

from tests.cli_helpers import SCRIPT, user_env
from tests.helpers import query, scalar
from tracedjobs.manager import JobManager

LISTING_API = all(
    hasattr(JobManager, name) for name in ("list_queues", "list_tasks", "list_locks")
)


@pytest.fixture
def jobs(db_url: str) -> str:
    query(db_url, """
        INSERT INTO tracedjobs_jobs (id, queue_name, task_name, status, lock, args, priority)
        VALUES (1, 'mail', 'app.send', 'failed', 'user-1', '{"to": "a"}', 0),
               (2, 'mail', 'app.send', 'todo', NULL, '{"to": "b"}', 5),
               (3, 'img', 'app.resize', 'succeeded', 'user-1', '{}', 0)""")
    return db_url


def shell(db_url: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "shell", *command], env=user_env(db_url), input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_one_command_then_exit(jobs: str) -> None:
    listed = shell(jobs, "list_jobs")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [  # oldest first, as Procrastinate prints them
        "#1 app.send on mail - [failed]",
        "#2 app.send on mail - [todo]",
        "#3 app.resize on img - [succeeded]",
    ]
    detailed = shell(jobs, "list_jobs", "details").stdout.splitlines()
    assert detailed[1] == ("#2 app.send on mail - [todo] (attempts=0, priority=5, "
                           "scheduled_at=None, args={'to': 'b'}, lock=None)")


def test_retry_and_cancel_print_the_job(jobs: str) -> None:
    retried = shell(jobs, "retry", "1")
    assert retried.returncode == 0 and retried.stdout == "#1 app.send on mail - [todo]\n"
    cancelled = shell(jobs, "cancel", "2")
    assert cancelled.stdout == "#2 app.send on mail - [cancelled]\n"
    assert scalar(jobs, "SELECT status FROM tracedjobs_jobs WHERE id = 2") == "cancelled"
    # Errors are one line in the shell's output and a failing exit status, no traceback.
    bad = shell(jobs, "retry", "3")
    assert bad.returncode == 1 and bad.stdout.startswith("error: ") and "Traceback" not in (
        bad.stdout + bad.stderr)
    assert shell(jobs, "retry", "x").stdout == "error: 'x' is not a job id\n"
    assert shell(jobs, "frobnicate").returncode == 1


def test_a_database_error_is_one_line_and_the_session_goes_on(jobs: str) -> None:
    """E.g. a read-only replica's URL: the server refuses the change; the shell says so in one
    line and runs the next command (one command on the command line: exit status 1)."""
    env = user_env(jobs, PGOPTIONS="-c default_transaction_read_only=on")
    one = subprocess.run([str(SCRIPT), "shell", "cancel", "2"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert one.returncode == 1 and one.stdout.startswith("database error: cannot execute ")
    done = subprocess.run([str(SCRIPT), "shell"], env=env, input="cancel 2\nlist_jobs\n",
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert "Traceback" not in one.stdout + one.stderr + done.stdout + done.stderr
    assert "database error: cannot execute " in done.stdout
    assert "read-only transaction" in done.stdout
    assert "#2 app.send on mail - [todo]" in done.stdout  # the next command ran
    assert scalar(jobs, "SELECT status FROM tracedjobs_jobs WHERE id = 2") == "todo"


def test_interactive_session_reads_commands_until_exit(jobs: str) -> None:
    session = shell(jobs, stdin="help\nlist_jobs\nexit\n")
    assert session.returncode == 0, session.stderr
    out = session.stdout
    assert out.startswith("Welcome to the tracedjobs shell.")
    for command in ("cancel", "exit", "list_jobs", "list_locks", "list_queues", "list_tasks",
                    "retry"):
        assert command in out
    assert "#1 app.send on mail - [failed]" in out


@pytest.mark.skipif(not LISTING_API, reason="JobManager.list_queues/list_tasks/list_locks "
                    "(Procrastinate's listing API) are not in this tree yet")
def test_listing_commands_filter_and_count(jobs: str) -> None:
    assert shell(jobs, "list_jobs", "queue=mail", "status=failed").stdout == (
        "#1 app.send on mail - [failed]\n")
    assert shell(jobs, "list_jobs", "id=3").stdout == "#3 app.resize on img - [succeeded]\n"
    assert shell(jobs, "list_jobs", "lock=user-1", "task=app.resize").stdout == (
        "#3 app.resize on img - [succeeded]\n")
    assert shell(jobs, "list_queues").stdout.splitlines() == [
        "img: 1 jobs (todo: 0, doing: 0, succeeded: 1, failed: 0, cancelled: 0, aborted: 0)",
        "mail: 2 jobs (todo: 1, doing: 0, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)",
    ]
    assert shell(jobs, "list_tasks", "queue=mail").stdout.splitlines() == [
        "app.send: 2 jobs (todo: 1, doing: 0, succeeded: 0, failed: 1, cancelled: 0, aborted: 0)",
    ]
    assert shell(jobs, "list_locks").stdout.splitlines()[0] == (
        "user-1: 2 jobs (todo: 0, doing: 0, succeeded: 1, failed: 1, cancelled: 0, aborted: 0)")
