"""``tracedjobs.contrib.django.app``: usable at import time, real once Django is ready.

Before ``TracedJobsConfig.ready()`` the app is a Blueprint (tasks can be declared on it;
anything else raises DjangoNotReady); ``ready()`` builds the real App and moves the tasks
over. ``current_app`` is the object ``app`` stands for (swap it in tests if you must).
"""

from __future__ import annotations

from typing import Any, NoReturn, cast

from tracedjobs.app import App
from tracedjobs.blueprints import Blueprint
from tracedjobs.contrib.django.exceptions import DjangoNotReady


class FutureApp(Blueprint):
    """Collects tasks until the real App exists."""

    def __getattr__(self, name: str) -> NoReturn:
        raise DjangoNotReady(
            f"tracedjobs.contrib.django.app.{name} is not available before Django is ready: "
            "declare tasks at import time, but defer jobs or run workers only after "
            "django.setup() (put 'tracedjobs.contrib.django' before your apps in "
            "INSTALLED_APPS, or use the TRACEDJOBS_ON_APP_READY setting)"
        )


class _ProxyApp:
    def __getattr__(self, name: str) -> Any:
        return getattr(current_app, name)

    def __repr__(self) -> str:
        return repr(current_app)


app: App = cast(App, _ProxyApp())
current_app: App = cast(App, FutureApp())
