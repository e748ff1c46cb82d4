"""The App the Django integration runs: Procrastinate's ``DjangoApp``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tracedjobs.app import App

logger = logging.getLogger(__name__)


def close_django_connections(call_next: Callable[[], Any], context: Any, worker: Any) -> Any:
    """Task middleware of every sync task (run in its thread, outermost). The thread lives
    on between tasks, and so would the Django connection it opened. As Django does around a
    request (and Procrastinate around a task): drop connections that are broken or older
    than ``CONN_MAX_AGE`` before and after the task, and clear the ``DEBUG`` query log after
    it."""
    _close_old_connections("before")
    try:
        return call_next()
    finally:
        from django.db import reset_queries

        reset_queries()
        _close_old_connections("after")


class DjangoApp(App):
    """The App class of ``tracedjobs.contrib.django.app`` (also for throwaway apps in tests:
    ``DjangoApp(connector=app.connector)``)."""

    task_middleware = (close_django_connections,)


def _close_old_connections(when: str) -> None:
    from django.db import close_old_connections

    try:
        close_old_connections()
    except Exception as exc:  # a task must not fail because a stale connection did not close
        logger.warning("closing Django's old database connections %s a task failed: %s", when, exc)
