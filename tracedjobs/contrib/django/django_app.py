"""The App the Django integration runs: Procrastinate's ``DjangoApp``."""

from __future__ import annotations

from tracedjobs.app import App


class DjangoApp(App):
    """The App class of ``tracedjobs.contrib.django.app`` (also for throwaway apps in tests:
    ``DjangoApp(connector=app.connector)``)."""
