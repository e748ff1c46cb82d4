"""tracedjobs' schema through Django migrations, and the (unmanaged) models' state.

The schema itself comes from tracedjobs' own SQL migrations (``tracedjobs.migrations``),
applied on Django's connection and recorded in ``tracedjobs_migrations`` (see
``migrations_utils.apply_schema``).
"""

from __future__ import annotations

from django.db import migrations, models

from tracedjobs.contrib.django.migrations_utils import apply_schema


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        # Reversing leaves the tables in place: drop them by hand if you mean it.
        migrations.RunPython(apply_schema, migrations.RunPython.noop),
        # The unmanaged models' state (no SQL: the tables above are tracedjobs' own).
        migrations.CreateModel(
            name="Attempt",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("attempt", models.IntegerField()),
                ("worker_name", models.TextField(blank=True, null=True)),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("outcome", models.TextField(blank=True, null=True)),
                ("duration", models.FloatField(blank=True, null=True)),
                ("queue_wait", models.FloatField(blank=True, null=True)),
                ("error_type", models.TextField(blank=True, null=True)),
                ("error_message", models.TextField(blank=True, null=True)),
                ("traceback", models.TextField(blank=True, null=True)),
                ("trace_id", models.TextField(blank=True, null=True)),
            ],
            options={
                "db_table": "tracedjobs_attempts",
                "ordering": ["id"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("type", models.TextField()),
                ("at", models.DateTimeField()),
                ("detail", models.JSONField(blank=True, null=True)),
            ],
            options={
                "db_table": "tracedjobs_events",
                "ordering": ["id"],
                "get_latest_by": "at",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue_name", models.TextField()),
                ("task_name", models.TextField()),
                ("priority", models.IntegerField()),
                ("lock", models.TextField(blank=True, null=True)),
                ("queueing_lock", models.TextField(blank=True, null=True)),
                ("args", models.JSONField()),
                (
                    "status",
                    models.TextField(
                        choices=[
                            ("todo", "todo"),
                            ("doing", "doing"),
                            ("succeeded", "succeeded"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                            ("aborting", "aborting"),
                            ("aborted", "aborted"),
                        ]
                    ),
                ),
                ("scheduled_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
                ("attempts", models.IntegerField()),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("traceparent", models.TextField(blank=True, null=True)),
            ],
            options={
                "db_table": "tracedjobs_jobs",
                "ordering": ["-id"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("name", models.TextField()),
                ("hostname", models.TextField()),
                ("pid", models.IntegerField()),
                ("concurrency", models.IntegerField()),
                ("started_at", models.DateTimeField()),
                ("last_heartbeat_at", models.DateTimeField()),
            ],
            options={
                "db_table": "tracedjobs_workers",
                "managed": False,
            },
        ),
    ]
