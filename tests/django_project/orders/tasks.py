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
