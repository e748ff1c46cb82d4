"""The App the Django integration runs: Procrastinate's ``DjangoApp``."""

from __future__ import annotations

from typing import Any

from tracedjobs.app import App


class DjangoApp(App):
    """An App whose sent-message counts follow Django's transactions.

    A job deferred inside ``transaction.atomic()`` is counted (``messaging.client.sent.
    messages``) when Django commits, not at defer time, and never if it rolls back.
    """

    def count_sent(self, queue: str, task_name: str, ids: list[int], connection: Any) -> None:
        in_transaction = getattr(self.connector, "in_transaction", None)
        if connection is None and in_transaction is not None and in_transaction():
            from django.db import transaction

            alias = getattr(self.connector, "alias", None)
            transaction.on_commit(
                lambda: super(DjangoApp, self).count_sent(queue, task_name, ids, None),
                using=alias,
            )
            return
        super().count_sent(queue, task_name, ids, connection)
