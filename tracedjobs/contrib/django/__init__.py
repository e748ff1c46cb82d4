"""Django integration, as Procrastinate's ``procrastinate.contrib.django``.

Add ``"tracedjobs.contrib.django"`` to ``INSTALLED_APPS`` (before your apps), run
``python manage.py migrate``, declare tasks in each app's ``tasks.py`` with
``from tracedjobs.contrib.django import app``, run ``python manage.py tracedjobs worker``.
Settings: ``TRACEDJOBS_*`` (see ``settings.DEFAULTS``).
"""

from __future__ import annotations

from typing import Any

from tracedjobs.contrib.django.tracedjobs_app import app

__all__ = ["DjangoApp", "DjangoConnector", "app", "connector_params"]


def __getattr__(name: str) -> Any:
    # These import Django's database layer: load them only when asked for.
    if name == "DjangoApp":
        from tracedjobs.contrib.django.django_app import DjangoApp

        return DjangoApp
    if name in ("DjangoConnector", "connector_params"):
        from tracedjobs.contrib.django import connector

        return getattr(connector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
