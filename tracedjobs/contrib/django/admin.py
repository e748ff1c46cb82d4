"""Jobs in the Django admin, read-only: list, filter, and each job's events and attempts."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from tracedjobs.contrib.django import models


class _ReadOnly:
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class EventInline(_ReadOnly, admin.TabularInline):
    model = models.Event
    fields = readonly_fields = ["type", "at", "detail"]
    extra = 0


class AttemptInline(_ReadOnly, admin.TabularInline):
    model = models.Attempt
    fields = readonly_fields = [
        "attempt", "worker_name", "started_at", "duration", "outcome", "error_type",
        "error_message", "trace_id",
    ]  # fmt: skip
    extra = 0


@admin.register(models.Job)
class JobAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["id", "task_name", "pretty_args", "status", "queue_name", "attempts",
                    "scheduled_at", "updated_at"]  # fmt: skip
    list_filter = ["status", "queue_name", "task_name"]
    search_fields = ["task_name", "lock", "queueing_lock"]
    readonly_fields = ["id", "task_name", "pretty_args", "status", "queue_name", "priority",
                       "lock", "queueing_lock", "scheduled_at", "created_at", "updated_at",
                       "attempts", "worker", "trace_id"]  # fmt: skip
    fields = readonly_fields
    inlines = [AttemptInline, EventInline]

    @admin.display(description="Args")
    def pretty_args(self, job: models.Job) -> str:
        text = json.dumps(job.args, sort_keys=True)
        return format_html("<code>{}</code>", text if len(text) < 500 else text[:500] + "…")


@admin.register(models.Worker)
class WorkerAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["name", "hostname", "pid", "concurrency", "started_at", "last_heartbeat_at"]
