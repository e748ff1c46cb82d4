"""The first ten minutes with one's own app (issue 11): the installed `tracedjobs` script run
in the user's own directory, with their module, against a real database and real workers."""

from __future__ import annotations

import datetime
import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cli_helpers import SCRIPT, readme_blocks, tj, user_env
from tests.helpers import WorkerProcess, query, scalar, wait_until

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's directory holding the README's `myapp/tasks.py` (not on sys.path)."""
    [tasks] = [b for b in readme_blocks("python") if b.startswith("# myapp/tasks.py")]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "tasks.py").write_text(tasks)
    return tmp_path


def test_app_is_imported_from_the_current_directory_with_short_task_names(
    db_url: str, project: Path
) -> None:
    env = user_env(db_url)
    done = tj(project, "defer", "--app", "myapp.tasks:app", "send_email", '{"to": "a@b.c"}',
              env=env)
    assert done.returncode == 0, done.stderr
    # Procrastinate's shape: the app as a dotted path before the command, key=value arguments.
    done = tj(project, "--app=myapp.tasks.app", "defer", "myapp.tasks.send_email", "to=x@y.z",
              env=env)
    assert done.returncode == 0, done.stderr
    rows = query(db_url, "SELECT task_name, queue_name, args FROM tracedjobs_jobs ORDER BY id")
    assert rows == [("myapp.tasks.send_email", "emails", {"to": "a@b.c"}),
                    ("myapp.tasks.send_email", "emails", {"to": "x@y.z"})]
    # `jobs list --task` takes the short name too when it knows the app.
    listed = tj(project, "jobs", "list", "--app", "myapp.tasks:app", "--task", "send_email",
                "--json", env=env)
    assert len(json.loads(listed.stdout)) == 2


def test_an_ambiguous_short_name_lists_the_candidates(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "twins.py").write_text(
        "import tracedjobs\n"
        "app = tracedjobs.App()\n"
        "@app.task(name='billing.notify')\n"
        "def a() -> None: ...\n"
        "@app.task(name='shipping.notify')\n"
        "def b() -> None: ...\n"
    )
    result = tj(tmp_path, "defer", "--app", "twins:app", "notify", env=user_env(db_url))
    one_line_error(result, "'notify' is ambiguous", "billing.notify, shipping.notify")
    result = tj(tmp_path, "defer", "--app", "twins:app", "nothing", env=user_env(db_url))
    one_line_error(result, "no task named 'nothing'", "billing.notify")
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 0


def test_python_dash_m_tracedjobs(db_url: str, project: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "tracedjobs", "--version"], cwd=project,
                             env=user_env(db_url), capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("tracedjobs "), version.stderr
    deferred = subprocess.run(
        [sys.executable, "-m", "tracedjobs", "defer", "--app", "myapp.tasks:app", "send_email",
         "to=a@b.c"], cwd=project, env=user_env(db_url), capture_output=True, text=True,
        timeout=60,
    )
    assert deferred.returncode == 0, deferred.stderr
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 1


def test_database_url_overrides_the_apps_own_database_on_every_command(
    db_url: str, tmp_path: Path
) -> None:
    # The app names a server that does not exist: every command must use --database-url.
    (tmp_path / "elsewhere.py").write_text(
        "import tracedjobs\n"
        f"app = tracedjobs.App(database_url={UNREACHABLE!r})\n"
        "@app.task(name='hello')\n"
        "def hello(who: str) -> None: print('hello', who)\n"
    )
    env = user_env()  # no TRACEDJOBS_DATABASE_URL either
    app = ("--app", "elsewhere:app")
    url = ("--database-url", db_url)
    first = tj(tmp_path, *url, *app, "defer", "hello", "who=you", env=env)
    assert first.returncode == 0, first.stderr
    job_id = int(first.stdout)
    commands = [
        ["defer", *app, *url, "hello", '{"who": "me"}'],
        ["jobs", "list", *app, *url, "--json"],
        ["jobs", "show", str(job_id), *app, *url],
        ["worker", *app, *url, "--one-shot"],
        ["jobs", "retry", "--failed", *app, *url],
        ["stalled", *app, *url],
        ["prune", "--older-than", "1d", *app, *url],
        ["migrate", *app, *url],
        ["schema", "--apply", *app, *url],
        ["healthchecks", *app, *url],
        ["top", "--once", *app, *url],
        ["top", "--json", *app, *url],
        ["db", "url", *app, *url],
        ["shell", "list_jobs", *app, *url],
    ]
    for command in commands:
        result = tj(tmp_path, *command, env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert "nobody" not in result.stdout + result.stderr, command
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'succeeded'") == 2
    assert tj(tmp_path, "db", "url", *url, env=env).stdout.strip() == db_url


def test_every_command_ends_quietly_into_a_closed_pipe(db_url: str) -> None:
    query(db_url, "INSERT INTO tracedjobs_jobs (queue_name, task_name, status) "
                  "SELECT 'q', 'record', 'failed' FROM generate_series(1, 300)")
    commands = [
        ["top", "--json"], ["top", "--once"], ["jobs", "list"], ["jobs", "list", "--json"],
        ["jobs", "show", "1"], ["--help"], ["worker", "--help"], ["schema", "--read"],
        ["shell", "list_jobs"], ["db", "url"], ["stalled"], ["healthchecks"],
        ["jobs", "retry", "1"], ["demo", "--jobs", "2"],
    ]
    for command in commands:
        proc = subprocess.Popen([str(SCRIPT), *command], env=user_env(db_url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line (`| head -0`)
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, (command, stderr)
        assert stderr == "", (command, stderr)


def test_80_columns_keep_ids_and_times_whole(db_url: str) -> None:
    # Long task names, long errors, big ids: everything that used to squeeze ids and times.
    query(db_url, "SELECT setval('tracedjobs_jobs_id_seq', 4821100)")
    query(db_url, """
        WITH j AS (
            INSERT INTO tracedjobs_jobs (queue_name, task_name, status, scheduled_at)
            SELECT 'notifications', 'mycompany.notifications.tasks.send_weekly_digest_email',
                   CASE WHEN i % 2 = 0 THEN 'failed' ELSE 'todo' END, now() + interval '1 day'
              FROM generate_series(1, 12) i
            RETURNING id, status)
        , a AS (
            INSERT INTO tracedjobs_attempts (job_id, attempt, finished_at, outcome, duration,
                                             error_type, error_message)
            SELECT id, 1, now(), 'failed', 0.5, 'SMTPServerDisconnected',
                   'Connection unexpectedly closed by the remote mail server while sending'
              FROM j WHERE status = 'failed')
        INSERT INTO tracedjobs_events (job_id, type)
        SELECT id, 'deferred' FROM j UNION ALL SELECT id, 'failed' FROM j WHERE status = 'failed'
    """)
    ids = [str(r[0]) for r in query(db_url, "SELECT id FROM tracedjobs_jobs")]
    env = user_env(db_url, COLUMNS="80")
    listed = tj(Path.cwd(), "jobs", "list", env=env).stdout
    once = tj(Path.cwd(), "top", "--once", env=env).stdout
    demo = tj(Path.cwd(), "demo", "--jobs", "8", env=env, timeout=180).stdout
    for output in (listed, once, demo):
        assert all(len(line) <= 80 for line in output.splitlines()), output
        # No id or time cut short (free text such as an error message may be).
        assert not re.search(r"(#\d*|\d{4,}|\d\d:\d?\d?:?\d?)…", output), output
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    job_lines = [line for line in listed.splitlines() if re.match(r"\s*\d+\s", line)]
    assert len(job_lines) == 12 and all(re.search(date, line) for line in job_lines), listed
    assert {line.split()[0] for line in job_lines} == set(ids)
    # top: each tail row starts with a whole time and a whole job id.
    tail = [line for line in once.splitlines() if re.match(r"\d\d:\d\d:\d\d  #\d+", line)]
    assert tail and all(line.split()[1][1:] in ids for line in tail), once
    assert re.match(r" tracedjobs top  \d\d:\d\d:\d\d ", once)
    failed = [line for line in once.splitlines() if re.match(r"#\d+ ", line)]
    assert failed and all(re.search(r"\d\d:\d\d:\d\d\s*$", line) for line in failed), once
    # The demo's table: each of its jobs by its whole id.
    demo_ids = re.search(r"ids (\d+)–(\d+)", demo)
    assert demo_ids, demo
    first, last = int(demo_ids[1]), int(demo_ids[2])
    rows = [line.split()[0] for line in demo.splitlines()
            if re.match(r"\s*\d+\s+\w+\s+\w+\s+(succeeded|failed)\s", line)]
    assert rows == [str(i) for i in range(first, last + 1)], demo


def test_defer_checks_arguments_against_the_tasks_signature(db_url: str, project: Path) -> None:
    env = user_env(db_url)
    result = tj(project, "defer", "--app", "myapp.tasks:app", "send_email", '{"too": "a@b.c"}',
                env=env)
    # pass_context: the context is the worker's to give, not a missing argument.
    one_line_error(result, "task 'myapp.tasks.send_email' has no argument 'too'", "takes: to")
    result = tj(project, "defer", "--app", "myapp.tasks:app", "build_report", env=env)
    one_line_error(result, "missing a required argument: 'day'")
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 0


def test_defer_takes_procrastinates_options(db_url: str, project: Path) -> None:
    env = user_env(db_url)
    app = ("--app", "myapp.tasks:app")
    at = tj(project, "defer", *app, "send_email", "to=a", "--at", "2030-01-02T03:04:05+01:00",
            env=env)
    assert at.returncode == 0, at.stderr
    later = tj(project, "defer", *app, "send_email", "to=b", "--in", "60", env=env)
    assert later.returncode == 0, later.stderr
    scheduled = dict(query(db_url, "SELECT args->>'to', scheduled_at FROM tracedjobs_jobs"))
    assert scheduled["a"] == datetime.datetime(2030, 1, 2, 2, 4, 5, tzinfo=datetime.UTC)
    in_a_minute = scheduled["b"] - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=40) < in_a_minute <= datetime.timedelta(seconds=61)

    locked = ("--queueing-lock", "digest")
    assert tj(project, "defer", *app, "send_email", "to=c", *locked, env=env).returncode == 0
    taken = tj(project, "defer", *app, "send_email", "to=d", *locked, env=env)
    one_line_error(taken, "already waiting")
    ignored = tj(project, "defer", *app, "send_email", "to=d", *locked,
                 "--ignore-already-enqueued", env=env)
    assert ignored.returncode == 0 and "(ignored)" in ignored.stderr, ignored.stderr

    # --unknown: a task the app does not import, by name, with or without an app.
    unknown = tj(project, "defer", "--unknown", "billing.tasks.invoice", '{"n": 1}',
                 "--queue", "billing", env=env)
    assert unknown.returncode == 0, unknown.stderr
    unknown = tj(project, "defer", *app, "--unknown", "billing.tasks.refund", "n=2", env=env)
    assert unknown.returncode == 0, unknown.stderr
    refused = tj(project, "defer", *app, "billing.tasks.refund", "n=2", env=env)
    one_line_error(refused, "no task named 'billing.tasks.refund'")
    rows = query(db_url, "SELECT task_name, queue_name, args FROM tracedjobs_jobs "
                         "WHERE task_name LIKE 'billing.%' ORDER BY id")
    assert rows == [("billing.tasks.invoice", "billing", {"n": 1}),
                    ("billing.tasks.refund", "default", {"n": 2})]


def test_running_job_shows_its_attempt_and_stalled_shows_worker_names(
    db_url: str, tmp_path: Path
) -> None:
    env = user_env(db_url)
    app = ("--app", "tests.apps.basic:app")
    worker = WorkerProcess(db_url, "tests.apps.basic:app", "--name", "w-mailer-1",
                           "--heartbeat-interval", "0.5", "--stalled-timeout", "30",
                           log_path=tmp_path / "w.log")
    try:
        from tests.helpers import run_cli

        job_id = int(run_cli(db_url, "defer", *app, "sleep_then_record", "seconds=60").stdout)
        wait_until(lambda: scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s",
                                  (job_id,)) == "doing", 30, "the job running")
        shown = tj(tmp_path, "jobs", "show", str(job_id), env=env).stdout
        assert "status=doing" in shown and "attempts=1 (#1 running)" in shown, shown
        assert "attempts=0" not in shown
        worker.signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.stop()
    wait_until(lambda: "worker=w-mailer-1" in tj(tmp_path, "stalled", "--seconds", "1",
                                                 env=env).stdout, 15, "the stalled job")
    # Once the dead worker's row is gone, its attempt still remembers the name.
    query(db_url, "DELETE FROM tracedjobs_workers")
    stalled = tj(tmp_path, "stalled", "--seconds", "1", env=env)
    assert f"{job_id}\tsleep_then_record\tdefault\tworker=w-mailer-1" in stalled.stdout
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", stalled.stdout)  # no UUIDs


def test_procrastinate_global_options_and_comma_separated_queues(
    db_url: str, tmp_path: Path
) -> None:
    from tests.helpers import run_cli

    for queue in ("a", "b", "c"):
        assert run_cli(db_url, "defer", "--app", "tests.apps.basic:app", "record",
                       f"label={queue}", "--queue", queue).returncode == 0
    worker = subprocess.run(
        [str(SCRIPT), "--app=tests.apps.basic.app", "-v", "worker", "-q", "a,b", "--one-shot",
         "--name", f"w-{uuid.uuid4().hex[:6]}"],
        env=user_env(db_url, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    assert "DEBUG" in worker.stderr  # -v, given before the command
    done = query(db_url, "SELECT queue_name, status FROM tracedjobs_jobs ORDER BY queue_name")
    assert done == [("a", "succeeded"), ("b", "succeeded"), ("c", "todo")]


def test_schema_and_healthchecks(empty_db_url: str, db_url: str, tmp_path: Path) -> None:
    read = tj(tmp_path, "schema", "--read", env=user_env(empty_db_url))
    assert read.returncode == 0 and "CREATE TABLE tracedjobs_jobs" in read.stdout
    assert scalar(empty_db_url, "SELECT to_regclass('tracedjobs_jobs')") is None  # only printed
    path = tj(tmp_path, "schema", "--migrations-path", env=user_env(empty_db_url)).stdout.strip()
    assert (Path(path) / "0001_initial.sql").is_file()

    sick = tj(tmp_path, "healthchecks", env=user_env(empty_db_url))
    assert sick.returncode == 1
    assert sick.stdout.splitlines() == ["App configuration: OK", "DB connection: OK"]
    one_line_error(sick, "run `tracedjobs migrate`")

    applied = tj(tmp_path, "schema", "--apply", env=user_env(empty_db_url))
    assert applied.returncode == 0 and "applied 0001_initial" in applied.stdout
    healthy = tj(tmp_path, "healthchecks", env=user_env(empty_db_url))
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.splitlines()[-1].endswith(": OK")

    down = tj(tmp_path, "healthchecks", env=user_env(UNREACHABLE))
    one_line_error(down, "cannot connect")
    assert down.stdout.splitlines() == ["App configuration: OK"]


def test_a_broken_app_module_is_one_line_that_says_why_and_where(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "crash.py").write_text("import tracedjobs\napp = tracedjobs.App()\nx = 1 / 0\n")
    (tmp_path / "needs.py").write_text("import a_dependency_nobody_installed\n")
    (tmp_path / "typo.py").write_text("def f(:\n")
    env = user_env(db_url)
    for app, fragments in (
        ("crash:app", ["importing 'crash' failed: ZeroDivisionError",
                       f"(at {tmp_path / 'crash.py'}:3)"]),
        ("needs:app", ["it imports 'a_dependency_nobody_installed', which is not installed"]),
        ("typo:app", ["importing 'typo' failed: SyntaxError", "typo.py, line 1"]),
        ("absent:app", ["No module named 'absent'", "not found in the current directory"]),
    ):
        one_line_error(tj(tmp_path, "jobs", "list", "--app", app, env=env), *fragments)
    # -v adds the traceback (for the user's own bug), after which the same line.
    verbose = tj(tmp_path, "-v", "jobs", "list", "--app", "crash:app", env=env)
    assert "Traceback" in verbose.stderr and 'crash.py", line 3' in verbose.stderr


def test_tasks_of_the_apps_import_paths_are_known_to_defer(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "app.py").write_text(
        "import tracedjobs\napp = tracedjobs.App(import_paths=['shop.tasks'])\n")
    (tmp_path / "shop" / "tasks.py").write_text(
        "from shop.app import app\n"
        "@app.task\n"
        "def ship(order: int) -> None: ...\n")
    result = tj(tmp_path, "defer", "--app", "shop.app:app", "ship", "order=7",
                env=user_env(db_url))
    assert result.returncode == 0, result.stderr
    assert query(db_url, "SELECT task_name, args FROM tracedjobs_jobs") == [
        ("shop.tasks.ship", {"order": 7})]
