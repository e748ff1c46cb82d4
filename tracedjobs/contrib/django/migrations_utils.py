"""Running tracedjobs' SQL migrations from Django migrations."""

from __future__ import annotations

from typing import Any


def apply_schema(apps: Any, schema_editor: Any) -> None:
    """Apply every tracedjobs SQL migration not applied yet, on Django's connection.

    Idempotent and recorded in ``tracedjobs_migrations``, so ``manage.py migrate`` and
    ``tracedjobs migrate`` agree. Each tracedjobs SQL migration gets a Django migration
    that calls this (tests/compat/test_django.py checks there is one per SQL file).
    """
    from tracedjobs import migrations as schema

    connection = schema_editor.connection
    connection.ensure_connection()
    schema.migrate(connection.connection)
