"""What every command shares: usage errors, loading the app, argument types, output helpers."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, NoReturn

APP_ENV = "TRACEDJOBS_APP"


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors become one line on stderr (see ``cli.main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# -- the app ------------------------------------------------------------------------------


def _import_app(path: str) -> Any:
    from tracedjobs.app import App
    from tracedjobs.utils import import_object

    # The installed `tracedjobs` script does not look in the current directory the way
    # `python -m` does; uvicorn, celery and procrastinate all do, so users expect it.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = import_object(path)
    if not isinstance(app, App):
        raise UsageError(f"{path} is a {type(app).__name__}, not a tracedjobs.App")
    # Tasks declared in the app's import_paths must be known to `defer` and `--task`, not
    # only to the worker.
    for module in app.import_paths:
        import_object(f"{module}:__name__")
    return app


def use_database(app: Any, url: str) -> None:
    """Point an imported app at another database (``--database-url`` beats the app's own).

    The app module built its connector at import time; it is lazy, so nothing has connected
    yet and swapping it is safe. The new one keeps the old one's JSON codecs and connection
    arguments and, like ``App(database_url=url)``'s, reads ``$TRACEDJOBS_SESSION_DATABASE_URL``
    (the direct route for LISTEN behind PgBouncer).
    """
    from tracedjobs.connector import PsycopgConnector
    from tracedjobs.manager import JobManager

    old = app.connector
    if isinstance(old, PsycopgConnector):
        app.connector = old.moved_to(url)
    else:
        app.connector = PsycopgConnector.for_app(url)
    app.job_manager = JobManager(app.connector)


def load_app(args: argparse.Namespace, *, required: bool) -> Any:
    """The app of ``--app`` / ``$TRACEDJOBS_APP`` (or one given to ``main``), else a bare one.

    ``--database-url`` always wins over the app's own database.
    """
    from tracedjobs.app import App

    database_url = getattr(args, "database_url", None)
    app = getattr(args, "preloaded_app", None)
    path = getattr(args, "app", None) or os.environ.get(APP_ENV)
    if app is None and path:
        app = _import_app(path)
    if app is not None:
        if database_url:
            use_database(app, database_url)
        return app
    if required:
        raise UsageError(f"this command needs --app module:app (or ${APP_ENV})")
    return App(database_url=database_url)


def ready_app(args: argparse.Namespace, *, required: bool = False) -> Any:
    """The app, with its schema checked (the embedded default migrates itself)."""
    app = load_app(args, required=required)
    app.check_schema()
    return app


def has_app(args: argparse.Namespace) -> bool:
    return bool(
        getattr(args, "preloaded_app", None) or getattr(args, "app", None)
        or os.environ.get(APP_ENV)
    )


# -- argument types -----------------------------------------------------------------------


def positive_int(text: str, least: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}")
    return value


def natural_int(text: str) -> int:
    return positive_int(text, least=0)


def seconds(text: str) -> float:
    """A duration: ``30``, ``2.5``, ``30s``, ``10m``, ``2h``."""
    from tracedjobs.utils import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def queue_list(text: str) -> list[str]:
    """``-q a,b`` (Procrastinate's comma-separated form); ``-q ''`` means every queue."""
    return [q.strip() for q in text.split(",") if q.strip()]


def iso_datetime(text: str) -> datetime.datetime:
    """An ISO 8601 date; without a time zone it is UTC, as in Procrastinate."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date (e.g. 2030-01-02T10:00:00+01:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def parse_when(text: str) -> datetime.datetime:
    """A moment in the past: a duration ago (``2h``) or an ISO date."""
    from tracedjobs.utils import parse_duration, utcnow

    try:
        return utcnow() - datetime.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return iso_datetime(text)
    except argparse.ArgumentTypeError:
        raise UsageError(f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO date") from None


# -- output -------------------------------------------------------------------------------


def console() -> Any:
    from tracedjobs.tui.render import make_console

    return make_console()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def fmt_time(value: datetime.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def stderr(message: str) -> None:
    print(message, file=sys.stderr)
