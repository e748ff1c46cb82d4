"""tracedjobs SQL migration 0003 (fewer writes per job, the history view), through Django.

The read-only ``Event`` model now reads the view ``tracedjobs_job_history`` (unmanaged:
these operations change Django's idea of the model, not the database).
"""

from __future__ import annotations

from django.db import migrations, models

from tracedjobs.contrib.django.migrations_utils import apply_schema


class Migration(migrations.Migration):
    dependencies = [("tracedjobs", "0002_lost_attempts")]
    operations = [
        migrations.RunPython(apply_schema, migrations.RunPython.noop),
        migrations.DeleteModel(name="Event"),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("key", models.TextField(primary_key=True, serialize=False)),
                ("type", models.TextField()),
                ("at", models.DateTimeField()),
                ("detail", models.JSONField(blank=True, null=True)),
                ("attempt", models.IntegerField()),
                ("seq", models.IntegerField()),
            ],
            options={
                "db_table": "tracedjobs_job_history",
                "ordering": ["at", "attempt", "seq", "key"],
                "get_latest_by": "at",
                "managed": False,
            },
        ),
    ]
