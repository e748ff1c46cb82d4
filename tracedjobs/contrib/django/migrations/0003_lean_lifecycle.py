"""tracedjobs SQL migration 0003 (fewer writes per job, the history view), through Django."""

from __future__ import annotations

from django.db import migrations

from tracedjobs.contrib.django.migrations_utils import apply_schema


class Migration(migrations.Migration):
    dependencies = [("tracedjobs", "0002_lost_attempts")]
    operations = [migrations.RunPython(apply_schema, migrations.RunPython.noop)]
