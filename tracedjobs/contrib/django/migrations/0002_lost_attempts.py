"""tracedjobs SQL migration 0002 (lost attempts), through Django."""

from __future__ import annotations

from django.db import migrations

from tracedjobs.contrib.django.migrations_utils import apply_schema


class Migration(migrations.Migration):
    dependencies = [("tracedjobs", "0001_initial")]
    operations = [migrations.RunPython(apply_schema, migrations.RunPython.noop)]
