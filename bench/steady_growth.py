"""Do the tables stay bounded under steady load with retention on? (A benchmark, not a test.)

    .venv/bin/python bench/steady_growth.py [--rate 300] [--seconds 120] [--retention 20]
                                            [--database-url URL]

Creates the database ``tracedjobs_growth`` next to ``--database-url`` (default
$TRACEDJOBS_DATABASE_URL, else the local server), runs one worker (``--retention``
seconds, concurrency 20) and a producer deferring ``--rate`` no-op jobs a second for
``--seconds``, and every 10 s prints the rows and on-disk size (tables with their indexes
and TOAST) of jobs, attempts and events. With retention on, rows level off at about
rate × (retention + one maintenance interval) and sizes stop growing once autovacuum
reuses the freed space; without it (``--retention 0``) both grow for ever.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
DB = "tracedjobs_growth"
TABLES = ("tracedjobs_jobs", "tracedjobs_attempts", "tracedjobs_events")
PRODUCER = """
import sys, time, anyio
import bench.bench_tasks as b

async def main(rate: float, seconds: float) -> None:
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        if due > sent:
            await b.noop.batch_defer_async(*[{"i": i} for i in range(sent, due)])
            sent = due
        await anyio.sleep(0.05)
    await b.app.connector.close_async()

anyio.run(main, float(sys.argv[1]), float(sys.argv[2]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--retention", type=float, default=20.0, help="0: keep everything")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TRACEDJOBS_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    params = conninfo_to_dict(args.database_url)
    params["dbname"] = DB
    url = make_conninfo(**params)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(TRACEDJOBS_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "tracedjobs"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    worker_args = ["worker", "--app", "bench.bench_tasks:app", "-c", "20",
                   "--heartbeat-interval", "2s", "--stalled-timeout", "10s"]  # fmt: skip
    if args.retention:
        worker_args += ["--retention", str(args.retention)]
    worker = subprocess.Popen(
        [*cli, *worker_args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(args.rate), str(args.seconds)], env=env, cwd=ROOT
    )
    print(f"rate {args.rate:.0f} jobs/s for {args.seconds:.0f} s, retention "
          f"{args.retention or 'off'}")  # fmt: skip
    header = "  t s" + "".join(f"{t.removeprefix('tracedjobs_'):>22}" for t in TABLES)
    print(header + "\n" + " " * 5 + "".join(f"{'rows':>11}{'MB':>11}" for _ in TABLES))
    start = time.monotonic()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while producer.poll() is None or time.monotonic() - start < args.seconds + 20:
                time.sleep(10)
                cells = []
                for table in TABLES:
                    rows, size = conn.execute(
                        f"SELECT (SELECT count(*) FROM {table}), "
                        f"pg_total_relation_size('{table}') / 1048576.0"
                    ).fetchone()  # type: ignore[misc]
                    cells.append(f"{rows:>11,}{size:>11.1f}")
                print(f"{time.monotonic() - start:>5.0f}" + "".join(cells), flush=True)
    finally:
        producer.terminate()
        worker.terminate()
        worker.wait(30)


if __name__ == "__main__":
    main()
