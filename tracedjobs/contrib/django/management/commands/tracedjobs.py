"""``python manage.py tracedjobs worker|defer|jobs|top|...``: the tracedjobs CLI, preset
with the Django project's App and database.

Everything after ``tracedjobs`` goes to ``tracedjobs.cli.main`` unchanged, except that the
app is this project's (``--app`` is refused) and the schema is Django's business
(``migrate`` and ``db`` are refused: run ``python manage.py migrate``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracedjobs.contrib.django import tracedjobs_app

APP_PATH = "tracedjobs.contrib.django.tracedjobs_app:current_app"
_REFUSED = {
    "migrate": "the schema is managed by Django: run `python manage.py migrate tracedjobs`",
    "db": "`tracedjobs db` manages the embedded server; Django's DATABASES says where the "
    "database is",
}


@contextmanager
def _preset_environment(database_url: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("TRACEDJOBS_APP", "TRACEDJOBS_DATABASE_URL")}
    os.environ["TRACEDJOBS_APP"] = APP_PATH
    os.environ["TRACEDJOBS_DATABASE_URL"] = database_url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(argv: Sequence[str]) -> int:
    """Run the tracedjobs CLI on this project's App; returns its exit status."""
    from tracedjobs import cli
    from tracedjobs.contrib.django.connector import DjangoConnector

    argv = list(argv)
    for arg in argv:
        if arg == "--app" or arg.startswith("--app="):
            raise CommandError("--app is not needed: the Django project's App is used")
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in _REFUSED:
        raise CommandError(_REFUSED[command])
    app = tracedjobs_app.current_app
    connector = app.connector
    # Workers need pools (and LISTEN) that Django's per-thread connections cannot give.
    worker_connector = (
        connector.get_worker_connector() if isinstance(connector, DjangoConnector) else connector
    )
    with app.replace_connector(worker_connector), _preset_environment(worker_connector.url):
        return cli.main(argv)


class Command(BaseCommand):
    help = "tracedjobs commands (worker, defer, jobs, top, ...) on this project's App"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="a tracedjobs command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        # Pass every option through to tracedjobs' own parser (Django's would claim -v, -h).
        try:
            status = run(argv[2:])
        except CommandError as exc:
            self.stderr.write(f"tracedjobs: error: {exc}")
            status = 2
        sys.exit(status)

    def handle(self, *args: Any, **options: Any) -> None:
        # call_command("tracedjobs", "jobs", "list", "--json")
        status = run(args)
        if status:
            raise CommandError(f"tracedjobs exited with status {status}", returncode=status)
