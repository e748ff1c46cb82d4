"""A real Django project (tests/django_project) on tracedjobs.contrib.django.

From Procrastinate's Django how-tos: the installed app, Django migrations for the schema,
tasks autodiscovered from ``tasks.py``, ``manage.py <cli> worker|defer|...``, defers on
Django's connection (inside ``atomic()``: committed or rolled back with it), read-only
models and admin pages, and the producer span joining Django's request span.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from tests.conftest import installed_otel, with_dbname
from tests.helpers import scalar, wait_until

pytest.importorskip("django")

PROJECT = Path(__file__).resolve().parents[1] / "django_project"
ROOT = PROJECT.parents[1]


@pytest.fixture(scope="module")
def django_db(server_url: str) -> Iterator[str]:
    """A database migrated by ``manage.py migrate`` (subprocess), Django set up in-process."""
    name = f"tj_dj_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = with_dbname(server_url, name)
    os.environ["DJANGO_DB_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
    sys.path.insert(0, str(PROJECT))
    migrate = manage(url, "migrate", "--no-input")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    import django
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    installed_otel()
    DjangoInstrumentor().instrument()
    django.setup()
    try:
        yield url
    finally:
        from django.db import connections

        connections.close_all()
        DjangoInstrumentor().uninstrument()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def manage(db_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEDJOBS_"))}
    env.update(
        DJANGO_DB_URL=db_url,
        DJANGO_SETTINGS_MODULE="djproject.settings",
        PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT)]),
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def committed_jobs(db_url: str) -> list[tuple[Any, ...]]:
    """Jobs seen from another connection (i.e. committed), as (id, task_name, args)."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT id, task_name, args FROM tracedjobs_jobs ORDER BY id"
        ).fetchall()


@pytest.fixture
def clean(django_db: str) -> str:
    with psycopg.connect(django_db, autocommit=True) as conn:
        conn.execute("DELETE FROM tracedjobs_jobs; DELETE FROM orders_order")
    return django_db


def test_migrate_installs_the_schema_and_knows_it_is_applied(django_db: str) -> None:
    from tracedjobs import migrations

    with psycopg.connect(django_db) as conn:
        versions = conn.execute("SELECT version FROM tracedjobs_migrations").fetchall()
    assert versions == [(v,) for v in range(1, migrations.latest_version() + 1)]
    # One Django migration per tracedjobs SQL migration, so upgrades go through migrate.
    django_migrations = Path(migrations.__file__).parent / "contrib/django/migrations"
    numbers = {int(f.name[:4]) for f in django_migrations.glob("[0-9][0-9][0-9][0-9]_*.py")}
    assert numbers >= set(range(1, migrations.latest_version() + 1))
    again = manage(django_db, "migrate", "--no-input")
    assert again.returncode == 0 and "No migrations to apply" in again.stdout
    check = manage(django_db, "makemigrations", "--check", "--dry-run")
    assert check.returncode == 0, check.stdout + check.stderr


def test_tasks_are_autodiscovered_and_on_app_ready_runs() -> None:
    from tracedjobs.contrib.django import app

    assert {"orders.tasks.send_confirmation", "orders.tasks.count_orders"} <= set(app.tasks)
    assert "extras:ping" in app.tasks  # TRACEDJOBS_ON_APP_READY added a blueprint
    assert type(app.connector).__name__ == "DjangoConnector"


def test_view_defers_inside_atomic_and_the_job_exists_after_commit(clean: str) -> None:
    from django.test import Client

    response = Client().post("/orders/", {"item": "book"})
    assert response.status_code == 200, response.content
    body = response.json()
    jobs = committed_jobs(clean)
    assert jobs == [(body["job"], "orders.tasks.send_confirmation", {"order_id": body["order"]})]


def test_view_rollback_removes_the_job_with_the_order(clean: str) -> None:
    from django.test import Client
    from orders.models import Order

    response = Client().post("/orders/", {"item": "book", "fail": "1"})
    assert response.status_code == 409
    assert response.json()["rolled_back"] > 0  # it had an id inside the transaction
    assert committed_jobs(clean) == []
    assert Order.objects.count() == 0


def test_a_job_deferred_in_atomic_is_invisible_until_commit(clean: str) -> None:
    from django.db import transaction
    from orders.tasks import send_confirmation

    with transaction.atomic():
        job_id = send_confirmation.defer(order_id=1)
        assert committed_jobs(clean) == []
        from tracedjobs.contrib.django import app

        # The same connection sees its own uncommitted job.
        assert app.job_manager.get_job_status(job_id) == "todo"
    assert [j[0] for j in committed_jobs(clean)] == [job_id]


def test_async_defer_uses_a_pool_on_the_same_database(clean: str) -> None:
    from django.test import AsyncClient

    async def post() -> Any:
        return await AsyncClient().post("/orders/async/")

    response = anyio.run(post)
    assert response.status_code == 200, response.content
    assert [j[0] for j in committed_jobs(clean)] == [response.json()["job"]]


def test_manage_py_worker_runs_jobs_that_use_the_orm(clean: str) -> None:
    from django.test import Client
    from orders.models import Order

    order = Client().post("/orders/", {"item": "pen"}).json()["order"]
    deferred = manage(clean, "tracedjobs", "defer", "orders.tasks.count_orders", "{}")
    assert deferred.returncode == 0, deferred.stderr
    assert int(deferred.stdout.strip()) > 0

    worker = manage(clean, "tracedjobs", "worker", "--one-shot")
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert Order.objects.get(pk=order).confirmed is True
    with psycopg.connect(clean) as conn:
        statuses = conn.execute("SELECT DISTINCT status FROM tracedjobs_jobs").fetchall()
    assert statuses == [("succeeded",)]

    listed = manage(clean, "tracedjobs", "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "orders.tasks.count_orders" in listed.stdout


def test_sync_tasks_do_not_keep_django_connections_between_tasks(clean: str) -> None:
    """As Django around a request (and Procrastinate around a task): a sync task's thread
    outlives the task, its Django connection must not — CONN_MAX_AGE is 0 here, so the
    first task's connection is closed before the second task runs."""
    from orders import tasks

    from tracedjobs.contrib.django import app

    tasks.CONNECTIONS.clear()
    tasks.note_connection.defer()
    tasks.note_connection.defer()
    app.run_worker(queues=["threads"], wait=False, concurrency=1, install_signal_handlers=False)
    (first, _), (second, first_closed) = tasks.CONNECTIONS
    assert first_closed is True and second != first
    # The last task's connection was closed as it ended; its server process leaves
    # pg_stat_activity a moment later (as note_connection itself waits for the first one).
    wait_until(
        lambda: scalar(
            clean, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", ([first, second],)
        ) == 0,
        10,
        "both tasks' Django connections to be gone",
    )


def test_manage_py_refuses_app_and_schema_commands(django_db: str) -> None:
    for args, reason in (
        (("migrate",), "manage.py migrate"),
        (("worker", "--app", "x:y"), "--app is not needed"),
    ):
        result = manage(django_db, "tracedjobs", *args)
        assert result.returncode == 2
        assert reason in result.stderr and "Traceback" not in result.stderr


def test_call_command_runs_the_cli(clean: str, capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import call_command

    call_command("tracedjobs", "defer", "extras:ping", "{}")
    job_id = int(capsys.readouterr().out.strip())
    assert [j[0] for j in committed_jobs(clean)] == [job_id]


def test_models_are_read_only_views_of_the_jobs(clean: str) -> None:
    from tracedjobs.contrib.django import app
    from tracedjobs.contrib.django.exceptions import ReadOnlyModel
    from tracedjobs.contrib.django.models import Event, Job

    job_id = app.configure_task("extras:ping").defer()
    job = Job.objects.get(pk=job_id)
    assert (job.task_name, job.status, job.args) == ("extras:ping", "todo", {})
    assert [e.type for e in Event.objects.filter(job_id=job_id)] == ["deferred"]
    with pytest.raises(ReadOnlyModel):
        Job.objects.filter(pk=job_id).update(status="failed")
    with pytest.raises(ReadOnlyModel):
        job.save()
    with pytest.raises(ReadOnlyModel):
        Job.objects.create(task_name="x", queue_name="q", args={})


def test_admin_lists_jobs_read_only(clean: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tracedjobs.contrib.django import app

    job_id = app.configure_task("extras:ping").defer()
    admin = User.objects.filter(username="admin").first() or User.objects.create_superuser(
        "admin", "admin@example.com", "pw"
    )
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/tracedjobs/job/")
    assert listing.status_code == 200
    assert b"extras:ping" in listing.content
    detail = client.get(f"/admin/tracedjobs/job/{job_id}/change/")
    assert detail.status_code == 200
    assert b"deferred" in detail.content  # the events inline
    assert client.get("/admin/tracedjobs/job/add/").status_code == 403
    assert client.get("/admin/tracedjobs/worker/").status_code == 200


def test_producer_span_is_a_child_of_the_django_request_span(clean: str) -> None:
    from django.test import Client

    otel = installed_otel()
    otel.spans.clear()
    response = Client().post("/orders/", {"item": "traced"})
    assert response.status_code == 200
    (send,) = otel.finished("send orders")
    (request,) = [s for s in otel.finished() if s.kind.name == "SERVER"]
    assert send.parent is not None and send.parent.span_id == request.context.span_id
    assert send.context.trace_id == request.context.trace_id
    # The stored traceparent carries the same trace into the worker.
    with psycopg.connect(clean) as conn:
        (traceparent,) = conn.execute("SELECT traceparent FROM tracedjobs_jobs").fetchone() or ("",)
    assert traceparent.split("-")[1] == f"{request.context.trace_id:032x}"


def test_the_app_says_when_django_is_not_ready(django_db: str) -> None:
    code = (
        "from tracedjobs.contrib.django import app\n"
        "try:\n    app.job_manager\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("DjangoNotReady"), result.stdout + result.stderr
    assert "INSTALLED_APPS" in result.stdout
