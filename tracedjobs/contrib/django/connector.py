"""A connector on Django's own database connection.

Synchronous calls (``task.defer()`` in a view, the job manager) run on the connection of the
Django thread, so a job deferred inside ``transaction.atomic()`` exists only once Django
commits, and vanishes on rollback. Asynchronous calls and workers use a psycopg pool built
from the same ``DATABASES`` entry (Django's connections are per thread and synchronous).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import set_json_loads

from tracedjobs.connector import PsycopgConnector
from tracedjobs.contrib.django import settings


def connector_params(alias: str = "default") -> dict[str, Any]:
    """libpq connection parameters of ``DATABASES[alias]`` (as Django itself would connect)."""
    from django.db import connections

    params = connections[alias].get_connection_params()
    known = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    return {k: v for k, v in params.items() if k in known and v not in (None, "")}


def conninfo(alias: str = "default") -> str:
    return make_conninfo(**{k: str(v) for k, v in connector_params(alias).items()})


class _DjangoConnection:
    """Django's psycopg connection, with this connector's JSON codecs on the cursors we open.

    Django loads jsonb as text (its JSONField decodes it); our queries want Python values.
    """

    def __init__(self, raw: psycopg.Connection[Any], loads: Callable[[str | bytes], Any]) -> None:
        self._raw = raw
        self._loads = loads

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self._raw.cursor(*args, **kwargs)
        set_json_loads(self._loads, cursor)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class DjangoConnector(PsycopgConnector):
    """Sync queries on Django's connection ``alias``; async ones on a pool to the same database.

    Other keyword arguments are PsycopgConnector's (``json_dumps``, ``json_loads``, pool
    options for the async pool and workers).
    """

    def __init__(self, alias: str | None = None, **options: Any) -> None:
        self.alias = alias or settings.get("DATABASE_ALIAS")
        self._options = options
        super().__init__(conninfo=conninfo(self.alias), **options)

    @contextmanager
    def connection(self, conn: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """``conn`` if given, else Django's connection of this thread (inside its
        transaction, if one is open)."""
        if conn is not None:
            yield conn
            return
        from django.db import connections

        wrapper = connections[self.alias]
        wrapper.ensure_connection()
        yield _DjangoConnection(wrapper.connection, self.json_loads)  # type: ignore[misc]

    def get_worker_connector(self) -> PsycopgConnector:
        """A plain pooled connector to the same database, for workers and the CLI."""
        return PsycopgConnector(conninfo=conninfo(self.alias), **self._options)
