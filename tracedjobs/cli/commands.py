"""Commands that run things or manage the database: worker, migrate/schema, db, healthchecks,
shell, demo, top."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tracedjobs.cli.base import UsageError, load_app, ready_app, stderr

# Procrastinate-only options are passed only when given: the worker's defaults apply.
_OPTIONAL = (
    "abort_job_polling_interval", "delete_jobs", "shutdown_graceful_timeout", "retention",
)


def worker_options(args: argparse.Namespace) -> dict[str, Any]:
    """``app.run_worker`` keyword arguments (Procrastinate's names) from the command line."""
    queues = [q for group in (args.queues or []) for q in group] + list(args.queue_names or [])
    options: dict[str, Any] = {
        "queues": queues or None,
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
        "name": args.name,
        "wait": args.wait,
        "listen_notify": args.listen_notify,
        "fetch_job_polling_interval": args.fetch_job_polling_interval,
        "update_heartbeat_interval": args.update_heartbeat_interval,
        "stalled_worker_timeout": args.stalled_worker_timeout,
        "rescue_stalled": args.rescue,
        "periodic_catch_up": args.periodic_catch_up,
    }
    for key in _OPTIONAL:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def cmd_worker(args: argparse.Namespace) -> int:
    from tracedjobs import otel_sdk

    app = ready_app(args, required=True)
    options = worker_options(args)
    sdk = otel_sdk.configure(metrics_port=args.metrics_port, metrics_host=args.metrics_host)
    try:
        app.run_worker(**options)
    finally:
        sdk.shutdown()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    app = load_app(args, required=False)
    applied = app.migrate()
    version = app.job_manager.schema_version()
    if applied:
        print(f"applied {', '.join(applied)}; schema is at version {version}")
    else:
        print(f"schema is up to date (version {version})")
    return 0


def schema_sql() -> str:
    """The SQL ``migrate`` runs on an empty database: every migration, in order."""
    from tracedjobs import sql

    parts = [
        f"-- {number:04d}_{name}.sql\n{body.strip()}\n" for number, name, body in sql.migrations()
    ]
    return "\n".join(parts)


def migrations_path() -> str:
    from importlib import resources

    return str(resources.files("tracedjobs.sql").joinpath("migrations"))


def cmd_schema(args: argparse.Namespace) -> int:
    """Procrastinate's ``schema``: ``--apply`` (the default) migrates, ``--read`` prints it."""
    if args.action == "read":
        print(schema_sql().rstrip())
        return 0
    if args.action == "migrations_path":
        print(migrations_path())
        return 0
    return cmd_migrate(args)


def cmd_healthchecks(args: argparse.Namespace) -> int:
    """Procrastinate's smoke test: the app loads, the database answers, the schema is there."""
    from tracedjobs.exceptions import SchemaError

    app = load_app(args, required=False)
    print("App configuration: OK")
    app.job_manager.schema_version()  # any error here is the connection's (one line, exit 1)
    print("DB connection: OK")
    try:
        version = app.job_manager.check_schema()
    except SchemaError as exc:
        stderr(f"tracedjobs: {exc}")
        return 1
    print(f"Found the tracedjobs tables (schema version {version}): OK")
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from tracedjobs.cli import shell

    return shell.run(ready_app(args).job_manager, args.shell_command)


def cmd_db(args: argparse.Namespace) -> int:
    from tracedjobs import embedded
    from tracedjobs.connector import DATABASE_URL_ENV

    elsewhere = args.database_url or os.environ.get(DATABASE_URL_ENV)
    source = "--database-url" if args.database_url else f"${DATABASE_URL_ENV}"
    if elsewhere and args.action != "url":
        raise UsageError(
            "`tracedjobs db start|stop|status` manage the embedded PostgreSQL; "
            f"{source} points at another server"
        )
    where = embedded.locate()
    if args.action == "start":
        url = embedded.start()
        from tracedjobs.app import App

        App(database_url=url).migrate()
        print(f"embedded PostgreSQL running: {url}")
        stderr(f"data directory {where.pgdata} ({where.reason})")
    elif args.action == "stop":
        print("stopped" if embedded.stop() else "not running")
    elif args.action == "status":
        info = embedded.status()
        if info["running"]:
            print(f"running (pid {info['pid']}) data={info['pgdata']} url={info['url']}")
        else:
            print(f"not running (data directory {info['pgdata']})")
        print(f"data directory chosen by: {where.reason}; set TRACEDJOBS_HOME to choose another")
        return 0 if info["running"] else 3
    elif args.action == "url":
        from tracedjobs.connector import PsycopgConnector

        if elsewhere:
            print(PsycopgConnector(conninfo=elsewhere).url)
            stderr(f"from {source} (not the embedded server)")
        else:
            print(embedded.start())
            stderr(f"embedded PostgreSQL, data directory {where.pgdata} ({where.reason})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tracedjobs import demo

    return demo.main(args)


def cmd_top(args: argparse.Namespace) -> int:
    from tracedjobs import tui

    return tui.main(args, ready_app(args))
