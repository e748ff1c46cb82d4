"""Versioned schema migrations, applied in order under an advisory lock."""

from __future__ import annotations

from typing import Any

import psycopg

from tracedjobs import sql
from tracedjobs.exceptions import SchemaError

# Any fixed number: serialises concurrent `migrate` runs across processes.
_MIGRATION_LOCK = 7_264_051_893

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS tracedjobs_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def latest_version() -> int:
    return sql.migrations()[-1][0]


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of the database (0 when tracedjobs was never installed)."""
    row = conn.execute("SELECT to_regclass('tracedjobs_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM tracedjobs_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the missing migrations; returns the names of those applied. Idempotent."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_CREATE_TABLE)
        version = current_version(conn)
        for number, name, body in sql.migrations():
            if number <= version:
                continue
            conn.execute(body)  # trusted file shipped with us
            conn.execute(
                "INSERT INTO tracedjobs_migrations (version, name) VALUES (%s, %s)", (number, name)
            )
            applied.append(f"{number:04d}_{name}")
    return applied


def check(conn: psycopg.Connection[Any]) -> int:
    """Raise SchemaError unless the schema is up to date; returns the version."""
    version = current_version(conn)
    latest = latest_version()
    if version == 0:
        raise SchemaError(
            "the tracedjobs tables do not exist in this database: run `tracedjobs migrate`"
        )
    if version < latest:
        raise SchemaError(
            f"the database schema is at version {version}, this tracedjobs needs {latest}: "
            "run `tracedjobs migrate`"
        )
    if version > latest:
        raise SchemaError(
            f"the database schema (version {version}) is newer than this tracedjobs "
            f"(version {latest}): upgrade tracedjobs"
        )
    return version
