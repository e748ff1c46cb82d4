"""tracedjobs' tables as read-only, unmanaged Django models (the schema is ours).

``Job.objects.filter(task_name="myapp.tasks.send", status="failed").count()``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.db import models

from tracedjobs.contrib.django import exceptions, settings

STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")


def _read_only(*args: Any, **kwargs: Any) -> NoReturn:
    raise exceptions.ReadOnlyModel(
        "the tracedjobs models are read-only: defer, retry and cancel jobs through the App "
        "(app.job_manager) or `python manage.py tracedjobs jobs ...`"
    )


_WRITES = frozenset(
    {
        "create", "acreate", "get_or_create", "aget_or_create", "update_or_create",
        "aupdate_or_create", "bulk_create", "abulk_create", "bulk_update", "abulk_update",
        "update", "aupdate", "delete", "adelete",
    }
)  # fmt: skip


class ReadOnlyQuerySet(models.QuerySet):
    def __getattribute__(self, name: str) -> Any:
        if name in _WRITES and settings.get("READONLY_MODELS"):
            return _read_only
        return super().__getattribute__(name)


class ReadOnlyBase(models.Model):
    objects = ReadOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if settings.get("READONLY_MODELS"):
            _read_only()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if settings.get("READONLY_MODELS"):
            _read_only()
        return super().delete(*args, **kwargs)


class Worker(ReadOnlyBase):
    id = models.UUIDField(primary_key=True)
    name = models.TextField()
    hostname = models.TextField()
    pid = models.IntegerField()
    concurrency = models.IntegerField()
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "tracedjobs_workers"

    def __str__(self) -> str:
        return f"{self.name} (last heartbeat {self.last_heartbeat_at:%Y-%m-%d %H:%M:%S})"


class Job(ReadOnlyBase):
    id = models.BigAutoField(primary_key=True)
    queue_name = models.TextField()
    task_name = models.TextField()
    priority = models.IntegerField()
    lock = models.TextField(null=True, blank=True)
    queueing_lock = models.TextField(null=True, blank=True)
    args = models.JSONField()
    status = models.TextField(choices=[(s, s) for s in STATUSES])
    scheduled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    attempts = models.IntegerField()
    worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    started_at = models.DateTimeField(null=True, blank=True)
    traceparent = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "tracedjobs_jobs"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"#{self.id} {self.task_name} ({self.status})"

    @property
    def trace_id(self) -> str | None:
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 else None


class Event(ReadOnlyBase):
    """One entry of a job's history (the view ``tracedjobs_job_history``: recorded events,
    plus each job's creation and each attempt's start read from their rows)."""

    key = models.TextField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.DO_NOTHING, db_constraint=False)
    type = models.TextField()
    at = models.DateTimeField()
    detail = models.JSONField(null=True, blank=True)
    attempt = models.IntegerField()
    seq = models.IntegerField()

    class Meta:
        managed = False
        db_table = "tracedjobs_job_history"
        ordering = ["at", "attempt", "seq", "key"]
        get_latest_by = "at"

    def __str__(self) -> str:
        return f"{self.type} at {self.at:%Y-%m-%d %H:%M:%S}"


class Attempt(ReadOnlyBase):
    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.DO_NOTHING, db_constraint=False)
    attempt = models.IntegerField()
    worker_name = models.TextField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    queue_wait = models.FloatField(null=True, blank=True)
    error_type = models.TextField(null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)
    trace_id = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "tracedjobs_attempts"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.outcome or 'running'}"
