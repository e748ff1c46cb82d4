"""The defer→start latency of a bare queue on this server: raw SQL, no library, no telemetry.

    .venv/bin/python bench/latency_floor.py --database-url URL [--rate 100] [--secs 15]

What every PostgreSQL queue pays at least: a producer inserts a job and commits (one durable
commit, with a NOTIFY in it); a consumer listening on its own connection hears it, claims the
job (``FOR UPDATE SKIP LOCKED``, a second durable commit) and starts it; then it marks the
job done (a third commit, off the measured path, as a real queue writes its result). Both
sides are plain synchronous psycopg in two processes, at the same paced rate as bench.py's
latency mode. The p99 here is the machine's: two fsyncs and four process wake-ups in a row.
Prints one JSON line (p50/p95/p99/max in ms).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from typing import Any

import psycopg

import bench

TABLE = "latency_floor_jobs"
CLAIM = (
    f"UPDATE {TABLE} SET status = 'doing' WHERE id = ("
    f" SELECT id FROM {TABLE} WHERE status = 'todo' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, ts"
)


def consume(url: str, n: int, ready: Any, out: Any) -> None:
    latencies: list[float] = []
    with (
        psycopg.connect(url, autocommit=True) as listen,
        psycopg.connect(url, autocommit=True) as work,
    ):
        listen.execute("LISTEN latency_floor")
        ready.set()
        for _ in listen.notifies():
            while row := work.execute(CLAIM).fetchone():
                latencies.append(time.time() - row[1])  # the job starts here
                work.execute(f"UPDATE {TABLE} SET status = 'done' WHERE id = %s", (row[0],))
            if len(latencies) >= n:
                break
    out.put(latencies)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("TRACEDJOBS_DATABASE_URL"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--secs", type=float, default=15.0)
    a = ap.parse_args()
    if not a.database_url:
        print("error: give --database-url (or set $TRACEDJOBS_DATABASE_URL)", file=sys.stderr)
        return 2
    url = bench.fresh_db(a.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'todo',"
            " ts double precision NOT NULL)"
        )
        conn.execute(f"CREATE INDEX ON {TABLE} (id) WHERE status = 'todo'")
    n = int(a.rate * a.secs)
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=consume, args=(url, n, ready, out), daemon=True)
    consumer.start()
    ready.wait(30)
    insert = (
        f"WITH j AS (INSERT INTO {TABLE} (ts) VALUES (%s) RETURNING id)"
        " SELECT pg_notify('latency_floor', id::text) FROM j"
    )
    with psycopg.connect(url, autocommit=True) as producer:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / a.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.execute(insert, (time.time(),))
    latencies = sorted(out.get(timeout=60))
    consumer.join(10)
    result = {
        "mode": "latency_floor",
        "n": len(latencies),
        "rate": a.rate,
        **{f"p{p}_ms": bench.pct([x * 1000 for x in latencies], p) for p in (50, 95, 99)},
        "max_ms": latencies[-1] * 1000,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
