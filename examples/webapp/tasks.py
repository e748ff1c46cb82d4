"""The jobs of the example web app. The database is ``$TRACEDJOBS_DATABASE_URL``."""

from __future__ import annotations

import logging
import random
import time

import psycopg

import tracedjobs

logger = logging.getLogger(__name__)

app = tracedjobs.App()

ORDERS_TABLE = """
CREATE TABLE IF NOT EXISTS webapp_orders (
    id bigserial PRIMARY KEY,
    item text NOT NULL,
    quantity integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
)
"""

# Orders of more than this many items fail ("out of stock"), so the dashboard has failures.
STOCK = 10


class OutOfStock(Exception):
    """Not enough items in stock for an order."""


def create_tables(database_url: str) -> None:
    """The app's own table (the tracedjobs schema comes from `tracedjobs migrate`)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ORDERS_TABLE)


@app.task(queue="emails", retry=3)
def send_welcome_email(user_id: int) -> None:
    """Pretend to send an email (the address is not logged: no personal data in logs)."""
    time.sleep(random.uniform(0.01, 0.2))
    logger.info("welcome email sent to user %s", user_id)


@app.task(queue="orders", retry=2)
def process_order(order_id: int) -> None:
    """Mark an order processed; large orders fail."""
    with psycopg.connect(app.connector.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT quantity FROM webapp_orders WHERE id = %s", (order_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"no order {order_id}")
        if row[0] > STOCK:
            raise OutOfStock(f"order {order_id}: {row[0]} items, {STOCK} in stock")
        time.sleep(random.uniform(0.02, 0.5))
        conn.execute("UPDATE webapp_orders SET processed_at = now() WHERE id = %s", (order_id,))
