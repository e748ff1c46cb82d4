from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from orders.models import Order
from orders.tasks import send_confirmation


class Rollback(Exception):
    pass


def place_order(request: HttpRequest) -> JsonResponse:
    """Create an order and defer its confirmation in ONE transaction (``fail=1`` rolls back)."""
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            job_id = send_confirmation.defer(order_id=order.pk)
            if request.POST.get("fail"):
                raise Rollback
    except Rollback:
        return JsonResponse({"rolled_back": job_id}, status=409)
    return JsonResponse({"order": order.pk, "job": job_id})


async def place_order_async(request: HttpRequest) -> JsonResponse:
    order = await Order.objects.acreate(item="async")
    job_id = await send_confirmation.defer_async(order_id=order.pk)
    return JsonResponse({"order": order.pk, "job": job_id})
