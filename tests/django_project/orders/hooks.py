"""TRACEDJOBS_ON_APP_READY: add a blueprint's tasks once the App exists."""

from __future__ import annotations

import tracedjobs

extras = tracedjobs.Blueprint()


@extras.task(name="ping")
def ping() -> str:
    return "pong"


def on_app_ready(app: tracedjobs.App) -> None:
    app.add_tasks_from(extras, namespace="extras")
