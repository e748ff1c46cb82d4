"""Autodiscovered by tracedjobs.contrib.django (every installed app's ``tasks`` module)."""

from __future__ import annotations

from orders.models import Order
from tracedjobs.contrib.django import app


@app.task(queue="orders")
def send_confirmation(order_id: int) -> None:
    # The ORM inside a task, in a real worker process.
    Order.objects.filter(pk=order_id).update(confirmed=True)


@app.task(queue="orders")
async def count_orders() -> int:
    return await Order.objects.acount()


# (backend pid of a task's Django connection, whether the previous task's one had closed)
CONNECTIONS: list[tuple[int, bool | None]] = []


@app.task(queue="threads")
def note_connection() -> None:
    import time

    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        previous_closed = None
        if CONNECTIONS:
            # A closed connection's server process leaves pg_stat_activity within moments.
            for _ in range(100):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [CONNECTIONS[-1][0]])
                previous_closed = cur.fetchone()[0] == 0
                if previous_closed:
                    break
                time.sleep(0.02)
    CONNECTIONS.append((pid, previous_closed))
