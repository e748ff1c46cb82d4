"""A small Procrastinate-style app under test (its real connector is never reached in tests)."""

from __future__ import annotations

import tracedjobs as procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo="postgresql://shop@127.0.0.1:1/production")
)
sent: list[str] = []


@app.task(queue="emails", retry=2)
def send_receipt(order_id: int) -> None:
    sent.append(f"receipt {order_id}")


@app.task(queue="emails", queueing_lock="digest")
async def send_digest() -> None:
    sent.append("digest")


@app.task
def flaky() -> None:
    raise RuntimeError("always fails")
