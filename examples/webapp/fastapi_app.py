"""The example web app with FastAPI, instrumented by opentelemetry-instrumentation-fastapi.

Nothing tracedjobs-specific is needed for tracing: ``defer`` runs inside the request's
SERVER span, so its ``send {queue}`` PRODUCER span is a child of it, and the job stores
that context for the worker's ``process {queue}`` span.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import psycopg
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel

from examples.webapp.tasks import app as jobs
from examples.webapp.tasks import create_tables, process_order, send_welcome_email


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    await anyio.to_thread.run_sync(create_tables, jobs.connector.url)
    async with jobs.open_async():
        yield


api = FastAPI(title="tracedjobs example", lifespan=lifespan)
FastAPIInstrumentor.instrument_app(api)


class Signup(BaseModel):
    user_id: int


class Order(BaseModel):
    item: str
    quantity: int = 1


@api.post("/signup")
async def signup(body: Signup) -> dict[str, int]:
    """Enqueue a job in its own transaction."""
    job_id = await send_welcome_email.defer_async(user_id=body.user_id)
    return {"job_id": job_id}


@api.post("/orders")
async def create_order(body: Order) -> dict[str, int]:
    """Insert the order and enqueue its processing in ONE transaction: both or neither."""
    conn = await psycopg.AsyncConnection.connect(jobs.connector.url)
    async with conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO webapp_orders (item, quantity) VALUES (%s, %s) RETURNING id",
            (body.item, body.quantity),
        )
        row = await cur.fetchone()
        assert row is not None
        order_id = int(row[0])
        job_id = await process_order.defer_async(connection=conn, order_id=order_id)
    return {"order_id": order_id, "job_id": job_id}


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
