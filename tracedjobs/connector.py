"""Connections: where the database is, and the psycopg pools that reach it.

Sync and async callers share every query; only the final ``execute`` differs.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tracedjobs import embedded
from tracedjobs.exceptions import ConfigurationError, DatabaseError, SchemaError
from tracedjobs.utils import redact_url

DATABASE_URL_ENV = "TRACEDJOBS_DATABASE_URL"

# A named query, or one composed from fixed fragments with psycopg.sql.
Query = str | pgsql.Composable


def resolve_database_url(url: str | None) -> tuple[str, bool]:
    """(url, is_embedded): the given URL, else $TRACEDJOBS_DATABASE_URL, else the embedded one."""
    url = url or os.environ.get(DATABASE_URL_ENV) or None
    if url:
        if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
            raise ConfigurationError(
                f"database URL {redact_url(url)!r} is not a PostgreSQL URL "
                "(expected postgresql://user:password@host:5432/dbname)"
            )
        return url, False
    return embedded.start(), True


def describe_connection_error(url: str, exc: BaseException) -> str:
    # psycopg messages can be multi-line; the first line says what happened.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot connect to {redact_url(url)}: {first}"


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


def _configure_sync(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True


class PsycopgConnector:
    """Holds the database URL and lazily opened psycopg pools (sync and async).

    ``PsycopgConnector(conninfo=...)`` is accepted as in Procrastinate; extra keyword
    arguments go to the psycopg pools (e.g. ``max_size``).
    """

    def __init__(self, *, conninfo: str | None = None, **pool_kwargs: Any) -> None:
        self._conninfo = conninfo
        self._resolved: str | None = None
        self.is_embedded = False
        self.pool_kwargs = pool_kwargs
        self._sync_pool: ConnectionPool[Any] | None = None
        self._async_pool: AsyncConnectionPool[Any] | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The database URL (starting the embedded server if none is configured)."""
        with self._lock:
            if self._resolved is None:
                url, is_embedded = resolve_database_url(self._conninfo)
                if is_embedded:
                    # The zero-setup default needs no `tracedjobs migrate`.
                    from tracedjobs import migrations

                    with psycopg.connect(url, autocommit=True) as conn:
                        migrations.migrate(conn)
                self._resolved, self.is_embedded = url, is_embedded
            return self._resolved

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    # -- sync ---------------------------------------------------------------------------

    def _get_sync_pool(self) -> ConnectionPool[Any]:
        pool = self._sync_pool
        if pool is None:
            url = self.url
            with self._lock:
                if self._sync_pool is None:
                    _probe(url)
                    kwargs = {"min_size": 1, "max_size": 10, **self.pool_kwargs}
                    self._sync_pool = ConnectionPool(
                        url, configure=_configure_sync, open=False, name="tracedjobs", **kwargs
                    )
                    try:
                        self._sync_pool.open(wait=True, timeout=10)
                    except Exception as exc:
                        self._sync_pool.close()
                        self._sync_pool = None
                        raise DatabaseError(describe_connection_error(url, exc)) from exc
                pool = self._sync_pool
        return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection."""
        try:
            with self._get_sync_pool().connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseError(describe_connection_error(self.url, exc)) from exc

    def execute(
        self, sql: Query, params: dict[str, Any] | None = None, *, conn: Any = None
    ) -> list[dict[str, Any]]:
        """Run one statement; rows as dicts (empty list when it returns none)."""
        if conn is not None:
            return _run_sync(conn, sql, params)
        with self.connection() as pooled:
            return _run_sync(pooled, sql, params)

    # -- async --------------------------------------------------------------------------

    async def _get_async_pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        if self._async_pool is not None and self._async_loop is not loop:
            # A pool belongs to the event loop that opened it (e.g. successive anyio.run calls).
            self._async_pool = None
        if self._async_pool is None:
            url = self.url
            await _probe_async(url)
            kwargs = {"min_size": 1, "max_size": 10, **self.pool_kwargs}
            pool = AsyncConnectionPool(
                url, configure=_configure_async, open=False, name="tracedjobs-async", **kwargs
            )
            try:
                await pool.open(wait=True, timeout=10)
            except Exception as exc:
                await pool.close()
                raise DatabaseError(describe_connection_error(url, exc)) from exc
            self._async_pool, self._async_loop = pool, loop
        return self._async_pool

    @asynccontextmanager
    async def connection_async(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            pool = await self._get_async_pool()
            async with pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseError(describe_connection_error(self.url, exc)) from exc

    async def execute_async(
        self, sql: Query, params: dict[str, Any] | None = None, *, conn: Any = None
    ) -> list[dict[str, Any]]:
        if conn is not None:
            return await _run_async(conn, sql, params)
        async with self.connection_async() as pooled:
            return await _run_async(pooled, sql, params)

    async def connect_async(self, *, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
        """A dedicated (unpooled) connection, e.g. for LISTEN."""
        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise DatabaseError(describe_connection_error(self.url, exc)) from exc

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        if self._sync_pool is not None:
            self._sync_pool.close()
            self._sync_pool = None

    async def close_async_pool(self) -> None:
        """Close the async pool if this event loop opened it (it cannot outlive its loop)."""
        if self._async_pool is not None:
            pool, self._async_pool = self._async_pool, None
            if self._async_loop is asyncio.get_running_loop():
                await pool.close()

    async def close_async(self) -> None:
        await self.close_async_pool()
        self.close()


# A pool retries a failing connection quietly for its whole timeout; one direct attempt
# first fails fast with the server's own reason (refused, unknown database, bad password).
_PROBE_TIMEOUT = 10


def _probe(url: str) -> None:
    try:
        psycopg.connect(url, connect_timeout=_PROBE_TIMEOUT).close()
    except psycopg.Error as exc:
        raise DatabaseError(describe_connection_error(url, exc)) from None


async def _probe_async(url: str) -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=_PROBE_TIMEOUT)
    except psycopg.Error as exc:
        raise DatabaseError(describe_connection_error(url, exc)) from None
    await conn.close()


_MISSING_SCHEMA = "the tracedjobs tables do not exist in this database: run `tracedjobs migrate`"


def _run_sync(conn: Any, sql: Query, params: dict[str, Any] | None) -> list[dict[str, Any]]:
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise SchemaError(_MISSING_SCHEMA) from exc


async def _run_async(conn: Any, sql: Query, params: dict[str, Any] | None) -> list[dict[str, Any]]:
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise SchemaError(_MISSING_SCHEMA) from exc
