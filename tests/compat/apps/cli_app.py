"""The app of Procrastinate's CLI how-tos: ``my_module.my_task`` in ``some_queue``."""

from __future__ import annotations

import tracedjobs as procrastinate

app = procrastinate.App()


@app.task(name="my_module.my_task", queue="some_queue")
def my_task(a: int = 0, b: int = 0) -> None: ...
