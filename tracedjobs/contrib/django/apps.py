"""The Django app ``tracedjobs.contrib.django``: builds the App once Django is ready."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules, import_string

from tracedjobs.app import App
from tracedjobs.blueprints import Blueprint
from tracedjobs.contrib.django import settings, tracedjobs_app


class TracedJobsConfig(AppConfig):
    name = "tracedjobs.contrib.django"
    label = "tracedjobs"
    verbose_name = "tracedjobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        tracedjobs_app.current_app = create_app(tracedjobs_app.current_app)

    @property
    def app(self) -> App:
        return tracedjobs_app.current_app


def create_app(blueprint: Blueprint) -> App:
    """The DjangoApp, with every app's tasks module imported and ``blueprint``'s tasks added."""
    from tracedjobs.contrib.django.connector import DjangoConnector
    from tracedjobs.contrib.django.django_app import DjangoApp

    module_name = settings.get("AUTODISCOVER_MODULE_NAME")
    if module_name:
        # Tasks declared at import time land on the FutureApp blueprint (still current).
        autodiscover_modules(module_name)
    app = DjangoApp(
        connector=DjangoConnector(),
        import_paths=list(settings.get("IMPORT_PATHS")),
        worker_defaults=settings.get("WORKER_DEFAULTS"),
        trace_parent=settings.get("TRACE_PARENT"),
        record_args=settings.get("RECORD_ARGS"),
    )
    app.perform_import_paths()
    if blueprint.tasks or blueprint.periodic_registry.tasks:
        app.add_tasks_from(blueprint, namespace="")
    hook = settings.get("ON_APP_READY")
    if hook:
        import_string(hook)(app)
    return app
