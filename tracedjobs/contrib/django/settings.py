"""The ``TRACEDJOBS_*`` Django settings (Procrastinate's ``PROCRASTINATE_*``), with defaults."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # The module imported from every installed app to register its tasks (None: none).
    "AUTODISCOVER_MODULE_NAME": "tasks",
    # More modules with tasks.
    "IMPORT_PATHS": [],
    # The DATABASES alias tracedjobs uses.
    "DATABASE_ALIAS": "default",
    # Options every worker starts from (App(worker_defaults=...)).
    "WORKER_DEFAULTS": None,
    # Dotted path of a function called with the App once it is ready.
    "ON_APP_READY": None,
    # The models refuse writes unless this is False (for tests).
    "READONLY_MODELS": True,
    # App(trace_parent=..., record_args=...): see the README's observability section.
    "TRACE_PARENT": "link",
    "RECORD_ARGS": False,
}


def get(name: str) -> Any:
    """``settings.TRACEDJOBS_<name>``, else the default (read on every call: tests override)."""
    from django.conf import settings

    return getattr(settings, f"TRACEDJOBS_{name}", DEFAULTS[name])
