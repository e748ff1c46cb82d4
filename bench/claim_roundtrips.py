"""Micro-benchmark of the worker's finish+claim transaction, three ways, one connection.

    .venv/bin/python bench/claim_roundtrips.py [N] [--database-url URL]

Each iteration records one finished attempt and claims the next job (limit 1), as a c=1
worker does: (a) pipeline + conn.transaction() (the old code: nested pipelines, 3–4 syncs),
(b) pipeline only, one Sync = one implicit transaction (the current JobManager.claim_jobs),
(c) no pipeline, BEGIN … COMMIT. Prints wall and client CPU time per iteration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench  # noqa: E402
from tracedjobs import sql  # noqa: E402
from tracedjobs.jobs import AttemptResult, Outcome, Status  # noqa: E402
from tracedjobs.manager import finish_params  # noqa: E402


async def main(n: int, base: str) -> None:
    url = bench.fresh_db(base)
    app, noop, _ = bench.make_app(url)
    await noop.batch_defer_async(*({"ts": time.time(), "i": i} for i in range(6 * n + 10)))
    await app.connector.close_async()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    wid = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO tracedjobs_workers (id, name, hostname, pid, concurrency) "
        "VALUES (%s, 'bench', 'h', 1, 1)",
        (wid,),
    )
    cp = {"worker_id": wid, "worker_name": "bench", "queues": None, "limit": 1}
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute(sql.query("claim_jobs"), cp)
    rows = await cur.fetchall()

    async def pipeline_and_transaction(fp: dict) -> list:
        async with conn.pipeline(), conn.transaction():
            await conn.execute(sql.query("finish_jobs"), fp)
            await cur.execute(sql.query("claim_jobs"), cp)
        return await cur.fetchall()

    async def pipeline_only(fp: dict) -> list:
        async with conn.pipeline():
            await conn.execute(sql.query("finish_jobs"), fp)
            await cur.execute(sql.query("claim_jobs"), cp)
        return await cur.fetchall()

    async def begin_commit(fp: dict) -> list:
        async with conn.transaction():
            await conn.execute(sql.query("finish_jobs"), fp)
            await cur.execute(sql.query("claim_jobs"), cp)
        return await cur.fetchall()

    variants = (
        ("pipeline + transaction (old)", pipeline_and_transaction),
        ("pipeline, one Sync (current)", pipeline_only),
        ("no pipeline, BEGIN..COMMIT", begin_commit),
    )
    for _round in range(2):
        for name, fn in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                r = rows[0]
                res = AttemptResult(
                    job_id=r["id"],
                    attempt_id=r["attempt_id"],
                    status=Status.SUCCEEDED,
                    outcome=Outcome.SUCCEEDED,
                    event="succeeded",
                    duration=0.001,
                )
                rows = await fn(finish_params([res]))
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"{name:30s} {dt / n * 1000:6.2f} ms/iteration wall, {cpu / n * 1000:5.2f} ms CPU"
            )
    await conn.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=500)
    ap.add_argument(
        "--database-url",
        default=os.environ.get("TRACEDJOBS_DATABASE_URL")
        or "postgresql://root@127.0.0.1:5432/test",
    )
    a = ap.parse_args()
    asyncio.run(main(a.n, a.database_url))
