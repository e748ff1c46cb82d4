"""A pooled connection's errors: losing the server is a DatabaseError that says where it
could not connect; an error the server reports for a statement keeps its psycopg class."""

from __future__ import annotations

import anyio
import psycopg
import pytest

import tracedjobs
from tracedjobs.exceptions import DatabaseError

RAISE = "DO $$ BEGIN RAISE EXCEPTION 'raised here' USING ERRCODE = '{}'; END $$"


@pytest.mark.parametrize(
    ("sqlstate", "error"),
    [("57014", psycopg.errors.QueryCanceled), ("40P01", psycopg.errors.DeadlockDetected),
     ("55P03", psycopg.errors.LockNotAvailable)],
)  # fmt: skip
def test_a_statement_error_keeps_its_class_sync_and_async(
    app: tracedjobs.App, sqlstate: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match="raised here"):
        app.connector.execute(RAISE.format(sqlstate))

    async def main() -> None:
        try:
            with pytest.raises(error, match="raised here"):
                await app.connector.execute_async(RAISE.format(sqlstate))
            with pytest.raises(error, match="raised here"):
                async with app.connector.connection_async() as conn:
                    await conn.execute(RAISE.format(sqlstate))
        finally:
            await app.connector.close_async()

    anyio.run(main)


def test_a_connection_killed_under_a_query_is_a_database_error(app: tracedjobs.App) -> None:
    with pytest.raises(DatabaseError, match=r"cannot connect to .*terminat"):
        app.connector.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    async def main() -> None:
        try:
            with pytest.raises(DatabaseError, match=r"cannot connect to .*terminat"):
                await app.connector.execute_async("SELECT pg_terminate_backend(pg_backend_pid())")
            # The pool replaced the dead connection.
            assert await app.connector.execute_async("SELECT 1 AS one") == [{"one": 1}]
        finally:
            await app.connector.close_async()

    anyio.run(main)
    assert app.connector.execute("SELECT 1 AS one") == [{"one": 1}]
