"""How long one `tracedjobs top` refresh takes on a big table.

Creates a database (default ``tj_top_bench`` on ``$TRACEDJOBS_BENCH_SERVER`` or the local
server) holding 1,000,000 jobs — mostly succeeded, some failed, a backlog of ready and
scheduled jobs, running jobs held by live and stale workers, one attempt and one event per
finished job — then times the refresh query (the one grouped query per refresh) and prints
p50/p95, without a filter and with a few `/` filters.

    .venv/bin/python bench/top_refresh.py [--jobs 1000000] [--runs 50] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import tracedjobs
from tracedjobs import migrations
from tracedjobs.tui.model import Options, load_snapshot, parse_filter

POPULATE = """
INSERT INTO tracedjobs_workers (id, name, hostname, pid, queues, concurrency, last_heartbeat_at)
SELECT md5(i::text)::uuid, 'worker-' || i, 'host-' || i, 1000 + i, ARRAY['q' || mod(i, 8)], 10,
       now() - CASE WHEN i <= 8 THEN interval '1 second' ELSE interval '10 minutes' END
  FROM generate_series(1, 10) AS i;

INSERT INTO tracedjobs_jobs (queue_name, task_name, args, status, scheduled_at, created_at,
                             updated_at, attempts, worker_id, started_at, traceparent)
SELECT 'q' || mod(i, 8),
       'app.tasks.task_' || mod(i, 25),
       jsonb_build_object('user', mod(i, 1000), 'order', i),
       CASE WHEN mod(i, 1000) < 940 THEN 'succeeded'
            WHEN mod(i, 1000) < 960 THEN 'failed'
            WHEN mod(i, 1000) < 995 THEN 'todo'
            ELSE 'doing' END,
       CASE WHEN mod(i, 1000) BETWEEN 985 AND 994 THEN now() + interval '1 hour' END,
       now() - make_interval(secs => (%(jobs)s - i) * 0.0864),
       now() - make_interval(secs => (%(jobs)s - i) * 0.0864),
       CASE WHEN mod(i, 1000) < 960 THEN 1 ELSE 0 END,
       CASE WHEN mod(i, 1000) >= 995 THEN md5((1 + mod(i, 10))::text)::uuid END,
       CASE WHEN mod(i, 1000) >= 995 THEN now() END,
       '00-' || md5(i::text) || '-' || substr(md5(i::text), 1, 16) || '-01'
  FROM generate_series(1, %(jobs)s) AS i;

INSERT INTO tracedjobs_attempts (job_id, attempt, worker_name, started_at, queue_wait,
                                 finished_at, outcome, duration, error_type, error_message)
SELECT id, 1, 'worker-1', updated_at - interval '50 ms', 0.01 * mod(id, 100),
       updated_at, status, 0.05,
       CASE WHEN status = 'failed' THEN 'ValueError' END,
       CASE WHEN status = 'failed' THEN 'card declined for order ' || id END
  FROM tracedjobs_jobs WHERE status IN ('succeeded', 'failed');

INSERT INTO tracedjobs_events (job_id, type, at)
SELECT id, CASE WHEN status IN ('succeeded', 'failed') THEN status ELSE 'deferred' END, updated_at
  FROM tracedjobs_jobs;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("TRACEDJOBS_BENCH_SERVER", "postgresql://root@127.0.0.1:5432/test"),
    )
    parser.add_argument("--database", default="tj_top_bench")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reuse", action="store_true", help="reuse an existing bench database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()

    params = conninfo_to_dict(args.server)
    params["dbname"] = args.database
    url = make_conninfo(**params)
    if not args.reuse:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {args.database}")
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            started = time.perf_counter()
            for statement in POPULATE.split(";\n\n"):
                conn.execute(statement, {"jobs": args.jobs})  # type: ignore[arg-type]
            conn.execute("VACUUM ANALYZE")
            print(f"populated {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")

    app = tracedjobs.App(database_url=url)
    cases = {
        "no filter": "",
        "queue:q3 status:failed": "queue:q3 status:failed",
        "args.user:42": "args.user:42",
        "error:declined age<1h": "error:declined age<1h",
    }
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            counts = conn.execute(
                "SELECT status, count(*) FROM tracedjobs_jobs GROUP BY 1 ORDER BY 1"
            ).fetchall()
            print("jobs by status:", ", ".join(f"{s}={n:,}" for s, n in counts))
            for label, text in cases.items():
                options = Options(seconds=30, filter=parse_filter(text))
                load_snapshot(app, options, conn=conn)  # warm the cache and the plan
                timings = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    load_snapshot(app, options, conn=conn)
                    timings.append((time.perf_counter() - t0) * 1000)
                timings.sort()
                p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
                print(
                    f"refresh [{label}]: p50 {statistics.median(timings):.1f} ms, "
                    f"p95 {p95:.1f} ms, max {timings[-1]:.1f} ms ({args.runs} runs)"
                )
    finally:
        app.close()
        if not args.keep:
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


if __name__ == "__main__":
    main()
