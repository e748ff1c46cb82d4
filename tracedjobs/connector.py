"""The one door to the database: where it is, and every pool and connection tracedjobs opens.

Nothing else in tracedjobs reads the URL to open connections of its own: the app's pools,
the worker's pool, its heartbeat and LISTEN connections, the gauge exporter and `top` all
come from here, so pool sizes, connection options (``search_path``, SSL…) and the JSON
codecs apply everywhere.

What needs a server session of its own (LISTEN, session-level advisory locks) asks for it
with :meth:`PsycopgConnector.connect_session_async`, which may go to a second URL: behind a
transaction-pooling PgBouncer, everything else goes through the pooler and these go direct.

Queries are run by *operations*: generators that yield :class:`Query` steps and receive
their rows (see ``manager.py``). :meth:`PsycopgConnector.run` and :meth:`run_async` drive
one operation on a sync or async connection, so each piece of database logic is written
once for both APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tracedjobs import embedded, sql
from tracedjobs.exceptions import ConfigurationError, DatabaseError, SchemaError
from tracedjobs.utils import redact_url

logger = logging.getLogger("tracedjobs")

DATABASE_URL_ENV = "TRACEDJOBS_DATABASE_URL"
SESSION_DATABASE_URL_ENV = "TRACEDJOBS_SESSION_DATABASE_URL"

T = TypeVar("T")

# A named query's text, or one composed from fixed fragments with psycopg.sql.
SQL = str | pgsql.Composable


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """One statement of an operation; the driver sends back its rows as dicts, or with
    ``scalars`` each row's first column (cheaper: no dict and no column description per
    row; what a defer's ``RETURNING id`` needs)."""

    sql: SQL
    params: dict[str, Any] | None = None
    scalars: bool = False


# An operation: yields queries, receives their rows, returns its result.
Operation = Generator[Query, list[Any], T]

# Errors that mean "the database is out of reach", as opposed to "it refused this".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (*CONNECTION_ERRORS, DatabaseError))


def first_line(exc: BaseException) -> str:
    """The first line of an error message (psycopg's can span several)."""
    try:
        text = str(exc).strip()
    except Exception:  # an exception whose __str__ raises
        text = ""
    return text.splitlines()[0] if text else type(exc).__name__


def describe_connection_error(url: str, exc: BaseException) -> str:
    return f"cannot connect to {display_url(url)}: {first_line(exc)}"


def lost_connection(exc: psycopg.OperationalError) -> bool:
    """A failure to reach the server or to keep talking to it (no SQLSTATE, or class 08 or
    57P), not an error the server reported for a statement: a statement timeout, a
    deadlock or a lock not available keep their own psycopg class."""
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


class _LostConnections:
    """``with``: an OperationalError that lost the connection or never got one (see
    :func:`lost_connection`) becomes a DatabaseError that says where; any other error passes
    as it is. A plain class, not a generator: it wraps every defer."""

    __slots__ = ("_connector",)

    def __init__(self, connector: PsycopgConnector) -> None:
        self._connector = connector

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, psycopg.OperationalError) and lost_connection(exc):
            raise DatabaseError(describe_connection_error(self._connector.url, exc)) from exc


def display_url(url: str) -> str:
    return redact_url(url) if url else "the libpq defaults (PG* environment variables)"


_MISSING_SCHEMA = "the tracedjobs tables do not exist in this database: run `tracedjobs migrate`"
# A pool retries a failing connection quietly for its whole timeout; one direct attempt
# first fails fast with the server's own reason (refused, unknown database, bad password).
_PROBE_TIMEOUT = 10
_POOL_OPEN_TIMEOUT = 10


class PsycopgConnector:
    """Where the database is, and the psycopg pools and connections that reach it.

    As in Procrastinate, ``PsycopgConnector(conninfo=...)``; without ``conninfo`` libpq's
    defaults apply (the ``PG*`` environment variables). ``json_dumps``/``json_loads``
    encode task arguments and decode them on every connection made here. Other keyword
    arguments go to the psycopg pools (``min_size``, ``max_size``, ``kwargs`` for the
    connections, ``timeout``…).

    ``session_conninfo``: where the connections that need a server session of their own
    go — the workers' and ``top``'s LISTEN, the gauge exporter's advisory lock — when
    ``conninfo`` is a pooler that pools by transaction (PgBouncer ``pool_mode =
    transaction``): a direct URL to the same database. Unset: everything goes to
    ``conninfo``.

    The first connection to ``conninfo`` tells whether a pooler answers there; if so,
    psycopg's automatic prepared statements are off on its connections (a transaction
    pooler runs each transaction on whichever server connection is free, where the
    statement is unknown), unless ``kwargs`` sets ``prepare_threshold``.
    """

    def __init__(
        self,
        *,
        conninfo: str | None = None,
        session_conninfo: str | None = None,
        json_dumps: Callable[[Any], str] | None = None,
        json_loads: Callable[[str | bytes], Any] | None = None,
        **pool_args: Any,
    ) -> None:
        self._conninfo = conninfo
        self._session_conninfo = session_conninfo
        # Only a bare App() (see for_app) looks at $TRACEDJOBS_DATABASE_URL and then
        # falls back to the embedded server.
        self._app_default = False
        # Connectors an App builds read $TRACEDJOBS_SESSION_DATABASE_URL; an explicit
        # connector means exactly what it says.
        self._session_from_env = False
        self._session_resolved: str | None = None
        # Whether conninfo leads to a pooler: unknown until the first connection says.
        self._pooler: bool | None = None
        self._pooler_warned = False
        self._json_dumps = json_dumps
        self._json_loads = json_loads
        self.pool_args = dict(pool_args)
        self._resolved: str | None = None
        self.is_embedded = False
        self._sync_pool: ConnectionPool[Any] | None = None
        self._sync_pool_external = False
        self._async_pool: AsyncConnectionPool[Any] | None = None
        self._async_pool_external = False
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._lost_connections = _LostConnections(self)

    @classmethod
    def for_app(cls, database_url: str | None) -> PsycopgConnector:
        """``App(database_url=...)``: that URL, else ``$TRACEDJOBS_DATABASE_URL``, else the
        embedded server (which says so once, loudly)."""
        connector = cls(conninfo=database_url)
        connector._app_default = database_url is None
        connector._session_from_env = True
        return connector

    def moved_to(self, database_url: str) -> PsycopgConnector:
        """A connector like this one (JSON codecs, pool and connection arguments such as
        ``kwargs={"prepare_threshold": 5}``) to another database: the CLI's
        ``--database-url``. Like an App's, its session URL comes from the environment."""
        connector = PsycopgConnector(
            conninfo=database_url,
            json_dumps=self._json_dumps,
            json_loads=self._json_loads,
            **self.pool_args,
        )
        connector._session_from_env = True
        return connector

    # -- where ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The connection string (starting the embedded server when it is the default).

        For your own connections (e.g. a web app's); tracedjobs itself connects only
        through the methods below.
        """
        with self._lock:
            if self._resolved is None:
                self._resolved = self._resolve()
            return self._resolved

    def _resolve(self) -> str:
        session = self._session_conninfo
        if session is None and self._session_from_env:
            session = os.environ.get(SESSION_DATABASE_URL_ENV) or None
        if session is not None:
            _check_conninfo(session)
        url = self._conninfo
        if url is None and self._app_default:
            url = os.environ.get(DATABASE_URL_ENV) or None
            if url is None:
                if session is not None:
                    # A direct route to which database? Not the embedded one, surely.
                    raise ConfigurationError(
                        f"${SESSION_DATABASE_URL_ENV} is set but ${DATABASE_URL_ENV} is not: "
                        "set both (the session URL reaches the same database directly) or "
                        "neither"
                    )
                return self._start_embedded()
        url = url or ""
        _check_conninfo(url)
        self._session_resolved = session
        return url

    def _session_url(self) -> str:
        url = self.url
        return url if self._session_resolved is None else self._session_resolved

    def _start_embedded(self) -> str:
        url = embedded.start()
        logger.warning(
            "no database configured: using the embedded PostgreSQL in %s (fine for trying "
            "tracedjobs; for real work set %s or App(database_url=...))",
            embedded.pgdata(),
            DATABASE_URL_ENV,
        )
        # The zero-setup default needs no `tracedjobs migrate`.
        from tracedjobs import migrations

        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
        self.is_embedded = True
        return url

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs and screens."""
        return display_url(self.url)

    @property
    def json_dumps(self) -> Callable[[Any], str]:
        return self._json_dumps or json.dumps

    @property
    def json_loads(self) -> Callable[[str | bytes], Any]:
        return self._json_loads or json.loads

    # -- connections ---------------------------------------------------------------------

    def _configure_sync(self, conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True
        self._set_codecs(conn)
        if self._pooler is None:
            row = conn.execute(sql.query("backend_pid")).fetchone()
            self._found_pooler(row is not None and row[0] != conn.info.backend_pid)
        self._adapt_to_pooler(conn)

    async def _configure_async(
        self, conn: psycopg.AsyncConnection[Any], *, main: bool = True
    ) -> None:
        """``main``: a connection to ``conninfo`` (not to ``session_conninfo``)."""
        await conn.set_autocommit(True)
        self._set_codecs(conn)
        if not main:
            return
        if self._pooler is None:
            row = await (await conn.execute(sql.query("backend_pid"))).fetchone()
            self._found_pooler(row is not None and row[0] != conn.info.backend_pid)
        self._adapt_to_pooler(conn)

    def _found_pooler(self, pooler: bool) -> None:
        if self._pooler is None:  # else another connection got there first
            self._pooler = pooler

    def _adapt_to_pooler(
        self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]
    ) -> None:
        # PgBouncer >= 1.21 with max_prepared_statements can keep them: kwargs says so.
        if self._pooler and "prepare_threshold" not in self._connect_kwargs():
            conn.prepare_threshold = None

    def _set_codecs(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        if self._json_dumps is not None:
            set_json_dumps(self._json_dumps, conn)
        if self._json_loads is not None:
            set_json_loads(self._json_loads, conn)

    def _connect_kwargs(self) -> dict[str, Any]:
        return dict(self.pool_args.get("kwargs") or {})

    def _pool_kwargs(self, **defaults: Any) -> dict[str, Any]:
        kwargs = {**defaults, **self.pool_args}
        kwargs.pop("conninfo", None)
        return kwargs

    def connect(self) -> psycopg.Connection[Any]:
        """A dedicated (unpooled) sync connection in autocommit mode."""
        url = self.url
        try:
            conn = psycopg.connect(url, connect_timeout=_PROBE_TIMEOUT, **self._connect_kwargs())
        except psycopg.Error as exc:
            raise DatabaseError(describe_connection_error(url, exc)) from None
        try:
            self._configure_sync(conn)
        except psycopg.Error as exc:  # the server went away right after the start-up
            conn.close()
            raise DatabaseError(describe_connection_error(url, exc)) from None
        return conn

    async def connect_async(
        self, *, timeout: float = _PROBE_TIMEOUT
    ) -> psycopg.AsyncConnection[Any]:
        """A dedicated (unpooled) async connection in autocommit mode: heartbeats, ``top``'s
        refreshes — anything that must not wait for, or hold, a pool slot. It may go through
        a transaction pooler: what needs a session uses :meth:`connect_session_async`."""
        return await self._connect_async(self.url, timeout, main=True)

    @property
    def session_through_pooler(self) -> bool:
        """Whether session connections may go through a pooler (no session URL, and the
        first connection found one); unknown before that connection counts as no."""
        return bool(self._pooler) and self._session_resolved is None

    async def connect_session_async(
        self, *, timeout: float = _PROBE_TIMEOUT
    ) -> psycopg.AsyncConnection[Any]:
        """A dedicated async connection (autocommit) with a server session of its own, for
        what lives as long as the session: LISTEN and session-level advisory locks. It goes
        to ``session_conninfo`` when set, else where everything goes."""
        url = self._session_url()
        conn = await self._connect_async(url, timeout, main=self._session_resolved is None)
        if self._pooler and self._session_resolved is None and not self._pooler_warned:
            # Only here: deferring and the CLI's job commands need no session, and are fine.
            self._pooler_warned = True
            logger.warning(
                "%s goes through a connection pooler: if it pools by transaction (PgBouncer "
                "pool_mode = transaction), LISTEN cannot work through it (new jobs wait for "
                "the polling interval) nor can the gauge exporter's session lock. Set $%s "
                "(or PsycopgConnector(session_conninfo=...)) to a direct URL of the same "
                "database (for a pooler in session mode, to this same URL)",
                display_url(url),
                SESSION_DATABASE_URL_ENV,
            )
        return conn

    async def _connect_async(
        self, url: str, timeout: float, *, main: bool
    ) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=max(1, int(timeout)), **self._connect_kwargs()
            )
        except psycopg.Error as exc:
            raise DatabaseError(describe_connection_error(url, exc)) from None
        try:
            await self._configure_async(conn, main=main)
        except BaseException as exc:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
            if isinstance(exc, psycopg.Error):  # the server went away after the start-up
                raise DatabaseError(describe_connection_error(url, exc)) from None
            raise
        return conn

    def create_pool_async(
        self, *, min_size: int, max_size: int, name: str
    ) -> AsyncConnectionPool[Any]:
        """A new async pool (not yet open) with this connector's settings, e.g. a worker's own."""
        kwargs = self._pool_kwargs()
        kwargs.update(min_size=min_size, max_size=max_size)
        return AsyncConnectionPool(
            self.url, configure=self._configure_async, open=False, name=name, **kwargs
        )

    # -- the app's pools -----------------------------------------------------------------

    def open(self, pool: ConnectionPool[Any] | None = None) -> None:
        """Open the sync pool now (it otherwise opens on first use), or adopt ``pool``."""
        if pool is not None:
            with self._lock:
                self._sync_pool, self._sync_pool_external = pool, True
            return
        self._get_sync_pool()

    async def open_async(self, pool: AsyncConnectionPool[Any] | None = None) -> None:
        """Open the async pool now (it otherwise opens on first use), or adopt ``pool``."""
        if pool is not None:
            self._async_pool, self._async_pool_external = pool, True
            self._async_loop = asyncio.get_running_loop()
            return
        await self._get_async_pool()

    def close(self) -> None:
        """Close the sync pool (a pool given to ``open`` is left to its owner)."""
        with self._lock:
            pool, self._sync_pool = self._sync_pool, None
            external, self._sync_pool_external = self._sync_pool_external, False
        if pool is not None and not external:
            pool.close()

    async def close_async(self) -> None:
        """Close the async pool if this event loop opened it, and the sync pool."""
        pool, self._async_pool = self._async_pool, None
        external, self._async_pool_external = self._async_pool_external, False
        if pool is not None and not external and self._async_loop is asyncio.get_running_loop():
            await pool.close()
        if self._sync_pool is not None:
            await asyncio.to_thread(self.close)

    def _get_sync_pool(self) -> ConnectionPool[Any]:
        pool = self._sync_pool
        if pool is not None:
            return pool
        url = self.url
        with self._lock:
            if self._sync_pool is None:
                _probe(url, self._connect_kwargs())
                kwargs = self._pool_kwargs(min_size=1, max_size=10)
                new = ConnectionPool(
                    url, configure=self._configure_sync, open=False, name="tracedjobs", **kwargs
                )
                try:
                    new.open(wait=True, timeout=_POOL_OPEN_TIMEOUT)
                except Exception as exc:
                    new.close()
                    raise DatabaseError(describe_connection_error(url, exc)) from exc
                self._sync_pool = new
                # A pool nobody closed would be closed by its __del__ during interpreter
                # shutdown, when its threads can no longer run: on Python 3.13 that waits
                # 5 s per thread (20 s for a plain `defer`). Close it at exit instead.
                weakref.finalize(self, _close_quietly, new)
            return self._sync_pool

    async def _get_async_pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        if self._async_pool is not None and self._async_loop is not loop:
            # A pool belongs to the event loop that opened it (e.g. successive anyio.run calls).
            self._async_pool = None
        if self._async_pool is None:
            url = self.url
            await _probe_async(url, self._connect_kwargs())
            pool = self.create_pool_async(
                min_size=self.pool_args.get("min_size", 1),
                max_size=self.pool_args.get("max_size", 10),
                name="tracedjobs-async",
            )
            try:
                await pool.open(wait=True, timeout=_POOL_OPEN_TIMEOUT)
            except Exception as exc:
                await pool.close()
                raise DatabaseError(describe_connection_error(url, exc)) from exc
            self._async_pool, self._async_loop = pool, loop
        return self._async_pool

    @contextlib.contextmanager
    def connection(self, conn: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """``conn`` if given (the caller's own, e.g. inside its transaction), else a pooled
        autocommit connection."""
        if conn is not None:
            yield conn
            return
        with self._lost_connections, self._get_sync_pool().connection() as pooled:
            yield pooled

    @contextlib.asynccontextmanager
    async def connection_async(
        self, conn: Any = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if conn is not None:
            yield conn
            return
        with self._lost_connections:
            pool = await self._get_async_pool()
            async with pool.connection() as pooled:
                yield pooled

    # -- running operations ---------------------------------------------------------------

    def run(self, operation: Operation[T], *, conn: Any = None, transaction: bool = False) -> T:
        """Drive ``operation`` on ``conn`` (or a pooled connection), in one transaction if asked."""
        with self.connection(conn) as c:
            tx = c.transaction() if transaction else contextlib.nullcontext()
            with tx:
                return _drive(operation, lambda q: _execute_sync(c, q))

    async def run_async(
        self, operation: Operation[T], *, conn: Any = None, transaction: bool = False
    ) -> T:
        if conn is not None:
            return await _run_on_async(operation, conn, transaction)
        # What connection_async() does, without its two context-manager layers: this is
        # every defer's path. putconn() rolls back a connection left in a transaction and
        # replaces a broken one.
        pool = await self._get_async_pool()
        with self._lost_connections:
            pooled = await pool.getconn()
            try:
                if pooled.autocommit:  # ours always are: nothing to commit at the end
                    return await _run_on_async(operation, pooled, transaction)
                # A pool given to open_async() may not be: commit as pool.connection() does.
                async with pooled:
                    return await _run_on_async(operation, pooled, transaction)
            finally:
                await pool.putconn(pooled)

    def execute(
        self, sql: SQL, params: dict[str, Any] | None = None, *, conn: Any = None
    ) -> list[dict[str, Any]]:
        """Run one statement; rows as dicts (an empty list when it returns none)."""
        with self.connection(conn) as c:
            return _execute_sync(c, Query(sql, params))

    async def execute_async(
        self, sql: SQL, params: dict[str, Any] | None = None, *, conn: Any = None
    ) -> list[dict[str, Any]]:
        async with self.connection_async(conn) as c:
            return await _execute_async(c, Query(sql, params))


def _close_quietly(pool: ConnectionPool[Any]) -> None:
    if not pool.closed:
        pool.close(timeout=1)


def _check_conninfo(url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigurationError(
            f"database URL {redact_url(url)!r} is not a PostgreSQL URL "
            "(expected postgresql://user:password@host:5432/dbname)"
        ) from None


def _probe(url: str, kwargs: dict[str, Any]) -> None:
    try:
        psycopg.connect(url, connect_timeout=_PROBE_TIMEOUT, **kwargs).close()
    except psycopg.Error as exc:
        raise DatabaseError(describe_connection_error(url, exc)) from None


async def _probe_async(url: str, kwargs: dict[str, Any]) -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=_PROBE_TIMEOUT, **kwargs)
    except psycopg.Error as exc:
        raise DatabaseError(describe_connection_error(url, exc)) from None
    await conn.close()


def _drive(operation: Operation[T], execute: Callable[[Query], list[dict[str, Any]]]) -> T:
    try:
        step = next(operation)
        while True:
            try:
                rows = execute(step)
            except Exception as exc:
                step = operation.throw(exc)
            else:
                step = operation.send(rows)
    except StopIteration as stop:
        return stop.value


async def _run_on_async(operation: Operation[T], conn: Any, transaction: bool) -> T:
    if transaction:
        async with conn.transaction():
            return await _drive_async(operation, conn)
    return await _drive_async(operation, conn)


async def _drive_async(operation: Operation[T], conn: Any) -> T:
    try:
        step = next(operation)
        while True:
            try:
                rows = await _execute_async(conn, step)
            except Exception as exc:
                step = operation.throw(exc)
            else:
                step = operation.send(rows)
    except StopIteration as stop:
        return stop.value


def _execute_sync(conn: Any, query: Query) -> list[Any]:
    try:
        if query.scalars:
            return [row[0] for row in conn.execute(query.sql, query.params).fetchall()]
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query.sql, query.params)
            return cur.fetchall() if cur.description else []
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise SchemaError(_MISSING_SCHEMA) from exc


async def _execute_async(conn: Any, query: Query) -> list[Any]:
    try:
        if query.scalars:
            cur = await conn.execute(query.sql, query.params)
            return [row[0] for row in await cur.fetchall()]
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query.sql, query.params)
            return await cur.fetchall() if cur.description else []
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise SchemaError(_MISSING_SCHEMA) from exc
