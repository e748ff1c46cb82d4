"""Shared fixtures: a real PostgreSQL per test (a clone of a migrated template database).

The server is ``$TRACEDJOBS_TEST_DATABASE_URL`` when set (e.g. the local server in .ci/run),
else an embedded PostgreSQL private to this checkout (see ``private_test_home``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import tracedjobs


# One template per test session (pid): concurrent sessions on one server must not drop
# each other's template mid-run.
class Otel:
    """SDK providers with in-memory exporters, installed once for the whole session.

    The OpenTelemetry API lets a process set its providers once, so every test that looks
    at spans or metrics shares these (and clears the span exporter first).
    """

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))
        self.tracer = trace.get_tracer("tests")

    def finished(self, name: str | None = None) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, name: str, data: Any = None) -> list[tuple[Any, Any]]:
        """(metric, point) pairs of the instrument ``name`` (cumulative since the start).

        Each collection hands out exemplars once: pass ``data`` to look at one collection.
        """
        found = []
        data = data or self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        found += [(m, p) for p in m.data.data_points]
        return found


_OTEL: Otel | None = None


def installed_otel() -> Otel:
    global _OTEL
    if _OTEL is None:
        _OTEL = Otel()
    return _OTEL


TEMPLATE = f"tracedjobs_test_template_{os.getpid()}"


def _server_url() -> str:
    url = os.environ.get("TRACEDJOBS_TEST_DATABASE_URL")
    if url:
        return url
    from tracedjobs import embedded

    os.environ.setdefault("TRACEDJOBS_HOME", str(private_test_home()))
    return embedded.start()


def private_test_home() -> Path:
    """The test suite's embedded server: one per checkout (and user), never shared.

    Under the temp dir with a short name keyed by the checkout's path: the server's Unix
    socket lives in its data directory, and socket paths must stay under ~107 bytes.
    """
    checkout = Path(__file__).resolve().parent.parent
    key = hashlib.sha256(f"{checkout}:{os.getuid()}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tracedjobs-test-{key}"


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A migrated template database, rebuilt once per test session."""
    from tracedjobs import migrations

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(with_dbname(server_url, TEMPLATE), autocommit=True) as conn:
        migrations.migrate(conn)
        # Tables the test apps write to, to prove what ran where and when.
        conn.execute(
            """CREATE TABLE test_runs (
                   id bigserial PRIMARY KEY, job_id bigint, label text, pid integer,
                   started_at timestamptz, finished_at timestamptz, value jsonb)"""
        )
    yield TEMPLATE
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test."""
    name = f"tj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    url = with_dbname(server_url, name)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """URL of a fresh database with no tracedjobs schema."""
    name = f"tj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def app(db_url: str) -> Iterator[tracedjobs.App]:
    app = tracedjobs.App(database_url=db_url)
    yield app
    app.close()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
