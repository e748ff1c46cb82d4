"""The example web app with Flask, instrumented by opentelemetry-instrumentation-flask.

Run with ``flask --app examples.webapp.flask_app run`` (after `tracedjobs migrate`); Flask
finds the ``create_app`` factory.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, request
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from examples.webapp.tasks import app as jobs
from examples.webapp.tasks import create_tables, process_order, send_welcome_email


def create_app() -> Flask:
    flask_app = Flask(__name__)
    FlaskInstrumentor().instrument_app(flask_app)
    create_tables(jobs.connector.url)

    @flask_app.post("/signup")
    def signup() -> dict[str, Any]:
        job_id = send_welcome_email.defer(user_id=int(request.json["user_id"]))  # type: ignore[index]
        return {"job_id": job_id}

    @flask_app.post("/orders")
    def create_order() -> dict[str, Any]:
        body = request.json or {}
        # The order and its job commit together, or not at all.
        with psycopg.connect(jobs.connector.url) as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO webapp_orders (item, quantity) VALUES (%s, %s) RETURNING id",
                (str(body["item"]), int(body.get("quantity", 1))),
            ).fetchone()
            assert row is not None
            order_id = int(row[0])
            job_id = process_order.defer(connection=conn, order_id=order_id)
        return {"order_id": order_id, "job_id": job_id}

    @flask_app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return flask_app
