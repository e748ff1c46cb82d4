"""The named queries as the driver sees them."""

from __future__ import annotations

import pytest
from psycopg import _queries

from tracedjobs import sql

# Run for every job or batch: psycopg parses a query again on every call unless it is
# short enough for its cache.
HOT = ("finish_jobs", "claim_jobs", "defer_jobs", "delete_finished_jobs")


@pytest.mark.parametrize("name", HOT)
def test_hot_queries_fit_psycopgs_parse_cache(name: str):
    assert len(sql.query(name)) <= _queries.MAX_CACHED_STATEMENT_LENGTH


def test_comments_and_indentation_are_not_sent():
    for name, text in sql.queries().items():
        lines = text.splitlines()
        assert all(line == line.strip() and line for line in lines), name
        assert not any(line.startswith("--") for line in lines), name
