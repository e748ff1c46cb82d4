"""Tasks registered on blueprint_app's App from another module: only ``import_paths``
makes a worker that loads ``blueprint_app:app`` know them."""

from __future__ import annotations

import time

import tracedjobs as procrastinate
from tests.apps.recording import record_run
from tests.compat.apps.blueprint_app import app


@app.task(name="split.imported", pass_context=True)
def imported(context: procrastinate.JobContext, label: str) -> None:
    record_run(context, label, time.time(), {"task": context.task.name})
