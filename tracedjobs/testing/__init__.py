"""Test your code that uses tracedjobs, as Procrastinate's ``procrastinate.testing`` does.

``InMemoryConnector`` has the surface of Procrastinate's: defer jobs, run them with
``app.run_worker(wait=False)``, look at ``connector.jobs``, ``connector.reset()``. Instead of
re-implementing every query in Python it is backed by a REAL PostgreSQL database: a
throwaway clone of a migrated template, so tests exercise the queries, locks, triggers and
worker that production runs. The server is ``server_url=``, else
``$TRACEDJOBS_TEST_DATABASE_URL``, else the embedded PostgreSQL (no set-up).

Cost (``bench/testing_connector.py``, local PostgreSQL on the 2-core dev machine): the
first connector of a process clones the template (~80 ms); each later one empties the
tables and opens its pool (~10 ms); with two defers and ``run_worker(wait=False)`` (a real
worker starting and stopping, ~40 ms) a test costs ~65 ms (Procrastinate's in-Python
connector: ~3 ms).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import socket
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tracedjobs import migrations, sql
from tracedjobs.connector import PsycopgConnector
from tracedjobs.exceptions import ConfigurationError

__all__ = ["InMemoryConnector", "JobsView", "TestDatabaseConnector"]

TEST_SERVER_ENV = "TRACEDJOBS_TEST_DATABASE_URL"
_PREFIX = "tracedjobs_testing_"
# Any fixed number: serialises template creation and cloning across processes.
_ADVISORY_LOCK = 7_264_051_894

JobRow = dict[str, Any]


def _schema_fingerprint() -> str:
    digest = hashlib.sha1()
    for version, name, body in sql.migrations():
        digest.update(f"{version}:{name}:{body}".encode())
    return digest.hexdigest()[:10]


def _with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def _server_url(server_url: str | None) -> str:
    url = server_url or os.environ.get(TEST_SERVER_ENV)
    if url:
        return url
    from tracedjobs import embedded

    return embedded.start()


class _Databases:
    """One throwaway database per process and server, created on first use.

    Every connector of a process uses it; each new connector empties it first. It is
    dropped when the process exits (and a later process drops those left by a killed one).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}  # server url -> database url
        self._host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]

    def url_for(self, server_url: str) -> str:
        with self._lock:
            if server_url not in self._urls:
                self._urls[server_url] = self._create(server_url)
                if len(self._urls) == 1:
                    atexit.register(self.drop_all)
            return self._urls[server_url]

    def _create(self, server_url: str) -> str:
        template = f"{_PREFIX}tpl_{_schema_fingerprint()}"
        name = f"{_PREFIX}{self._host}_{os.getpid()}"
        try:
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
                self._drop_orphans(admin)
                exists = admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (template,)
                ).fetchone()
                if not exists:
                    admin.execute(
                        pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(template))
                    )
                    with psycopg.connect(_with_dbname(server_url, template), autocommit=True) as c:
                        migrations.migrate(c)
                admin.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        pgsql.Identifier(name)
                    )
                )
                admin.execute(
                    pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        pgsql.Identifier(name), pgsql.Identifier(template)
                    )
                )
                admin.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot create a test database on the server of {TEST_SERVER_ENV} or "
                f"server_url= (the user needs the CREATEDB privilege): {exc}".strip()
            ) from exc
        return _with_dbname(server_url, name)

    def _drop_orphans(self, admin: psycopg.Connection[Any]) -> None:
        """Drop this host's test databases whose process is gone (a killed test run)."""
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"{_PREFIX}{self._host}\\_%",),
        ).fetchall()
        for (datname,) in rows:
            pid = datname.rsplit("_", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                admin.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        pgsql.Identifier(datname)
                    )
                )

    def drop_all(self) -> None:
        for connector in list(_LIVE):
            connector.close()
        with self._lock:
            urls, self._urls = self._urls, {}
        for server_url, url in urls.items():
            name = str(conninfo_to_dict(url)["dbname"])
            try:
                with psycopg.connect(server_url, autocommit=True) as admin:
                    admin.execute(
                        pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            pgsql.Identifier(name)
                        )
                    )
            except psycopg.Error:
                pass  # the server is gone already: nothing left to clean


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_DATABASES = _Databases()
# Connectors made so far: a new one closes the pools of the earlier ones (they reopen on
# use), so a test suite that makes one per test does not pile up idle connections.
_LIVE: weakref.WeakSet[TestDatabaseConnector] = weakref.WeakSet()


class JobsView(Mapping[int, JobRow]):
    """``{job id: job row}``, read from the database on every access (never stale)."""

    def __init__(self, connector: TestDatabaseConnector) -> None:
        self._connector = connector

    def _rows(self, job_id: int | None = None) -> list[JobRow]:
        return self._connector.execute(sql.query("testing_jobs"), {"id": job_id})

    def __getitem__(self, job_id: int) -> JobRow:
        rows = self._rows(int(job_id))
        if not rows:
            raise KeyError(job_id)
        return rows[0]

    def __iter__(self) -> Iterator[int]:
        return iter([r["id"] for r in self._connector.execute(sql.query("testing_job_ids"))])

    def __len__(self) -> int:
        return len(self._connector.execute(sql.query("testing_job_ids")))

    # One query instead of one per job.
    def values(self) -> list[JobRow]:  # type: ignore[override]
        return self._rows()

    def items(self) -> list[tuple[int, JobRow]]:  # type: ignore[override]
        return [(r["id"], r) for r in self._rows()]

    def __repr__(self) -> str:
        return f"JobsView({dict(self.items())!r})"


class TestDatabaseConnector(PsycopgConnector):
    """A connector on this process's throwaway test database, emptied when created.

    ``jobs`` maps job ids to rows (``status``, ``task_name``, ``args``, ``queue_name``,
    ``attempts``, ``abort_requested``…), ``events`` lists ``{job_id, type, at}`` rows, and
    ``reset()`` empties the database. Connectors made in one process share its database:
    making a new one empties it, like a fresh Procrastinate ``InMemoryConnector``.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, *, server_url: str | None = None, **pool_kwargs: Any) -> None:
        url = _DATABASES.url_for(_server_url(server_url))
        for earlier in list(_LIVE):
            earlier.close()
        super().__init__(conninfo=url, **pool_kwargs)
        _LIVE.add(self)
        self.reset()

    @property
    def jobs(self) -> JobsView:
        return JobsView(self)

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.execute(sql.query("testing_events"))

    def reset(self) -> None:
        """Remove every job, event, attempt, worker and periodic tick; ids restart at 1."""
        self.execute(sql.query("testing_reset"))


# Procrastinate's name, so ``from procrastinate import testing`` code keeps working.
InMemoryConnector = TestDatabaseConnector
