"""A connector on Django's own database connection.

Synchronous calls (``task.defer()`` in a view, the job manager) run on the connection of the
Django thread, so a job deferred inside ``transaction.atomic()`` exists only once Django
commits, and vanishes on rollback. Asynchronous calls and workers use a psycopg pool built
from the same ``DATABASES`` entry (Django's connections are per thread and synchronous).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import JsonbLoader, JsonLoader

from tracedjobs.connector import PsycopgConnector, Query
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
    """Django's psycopg connection, with psycopg's JSON loaders on the cursors we open.

    Django loads jsonb as text (its JSONField decodes it); our queries want dicts.
    """

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self._raw = raw

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self._raw.cursor(*args, **kwargs)
        cursor.adapters.register_loader("jsonb", JsonbLoader)
        cursor.adapters.register_loader("json", JsonLoader)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class DjangoConnector(PsycopgConnector):
    """Sync queries on Django's connection ``alias``; async ones on a pool to the same database."""

    def __init__(self, alias: str | None = None, **pool_kwargs: Any) -> None:
        self.alias = alias or settings.get("DATABASE_ALIAS")
        super().__init__(conninfo=conninfo(self.alias), **pool_kwargs)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Django's connection of this thread (inside its transaction, if one is open)."""
        from django.db import connections

        wrapper = connections[self.alias]
        wrapper.ensure_connection()
        yield _DjangoConnection(wrapper.connection)  # type: ignore[misc]

    def execute(
        self, sql: Query, params: dict[str, Any] | None = None, *, conn: Any = None
    ) -> list[dict[str, Any]]:
        if conn is not None:
            return super().execute(sql, params, conn=conn)
        with self.connection() as django_conn:
            return super().execute(sql, params, conn=django_conn)

    def in_transaction(self) -> bool:
        """True inside Django's ``atomic()`` on this connector's database."""
        from django.db import connections

        return bool(connections[self.alias].in_atomic_block)

    def get_worker_connector(self) -> PsycopgConnector:
        """A plain pooled connector to the same database, for workers and the CLI."""
        return PsycopgConnector(conninfo=conninfo(self.alias), **self.pool_kwargs)
