"""Where a job's defer→start time goes, at a steady low rate (concurrency 1, LISTEN/NOTIFY).

    BENCH_PEERS_DIR=... .venv/bin/python bench/latency_breakdown.py [--rate 100] [--secs 15]
        [--telemetry [--client-export thread|process]] [--database-url URL]

The client defers ``lat`` jobs one at a time (as bench.py's latency mode); the worker runs
``bench/latency_probe.py``, which marks when the exchange that claimed each job was called
and returned and when the job's coroutine began. With the job row's timestamps (the
claim's transaction start, ``started_at``), each job's time splits into:

- producer defer: the client's ``defer_async`` (insert, commit, its span with --telemetry);
- to claim start: from the defer's return to the claim's BEGIN (the notification reaching
  the worker, its fetch loop starting an exchange, a pooled connection, the pipeline sent);
- claim: BEGIN to the exchange's return (the claim statement, its commit, the round trip);
- to the task: the exchange's return to the task's first line (the job's task, its span,
  middleware, the call).

Prints p50/p95/p99 of each part, each part's mean over the slowest 1 % of jobs, and the
worker process's CPU time per job (user + system, while the jobs were deferred).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

import bench


async def run(base: str, rate: float, secs: float) -> tuple[dict[str, list[float]], float]:
    url = bench.fresh_db(base)
    with tempfile.NamedTemporaryFile("w", suffix=".marks", delete=False) as f:
        marks_file = f.name
    env = bench.worker_env(url, extra={"BENCH_MARKS_FILE": marks_file})
    env["PYTHONPATH"] = os.pathsep.join([str(bench.HERE), env["PYTHONPATH"]])
    cmd = bench.worker_cmd()
    cmd[cmd.index(bench.TASKS)] = "latency_probe:app"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=bench.die_with_bench)  # fmt: skip
    sent: dict[int, tuple[float, float]] = {}
    try:
        app, _, lat = bench.make_app(url)
        await lat.defer_async(ts=time.time(), i=-1)  # the worker is up once this one starts
        deadline = time.time() + 30
        while not Path(marks_file).read_text().startswith("-1 "):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("the probe worker did not start a job")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        worker = psutil.Process(proc.pid)
        cpu0 = sum(worker.cpu_times()[:2])
        n = int(rate * secs)
        async for i in bench.paced(rate, n):
            ts = time.time()
            await lat.defer_async(ts=ts, i=i)
            sent[i] = (ts, time.time())
        await app.connector.close_async()
        deadline = time.time() + 30
        while len(Path(marks_file).read_text().splitlines()) < n + 1 and time.time() < deadline:
            await asyncio.sleep(0.1)
        cpu_ms = (sum(worker.cpu_times()[:2]) - cpu0) * 1000 / n
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    marks = {}
    for line in Path(marks_file).read_text().splitlines():
        i, *times = line.split()
        marks[int(i)] = [float(t) for t in times]
    Path(marks_file).unlink()
    with psycopg.connect(url) as conn:
        claimed = dict(conn.execute(
            "SELECT (j.args->>'i')::int, extract(epoch FROM a.started_at)::float8"
            "  FROM tracedjobs_attempts a JOIN tracedjobs_jobs j ON j.id = a.job_id"
        ).fetchall())  # fmt: skip
    names = ("defer→start (total)", "producer defer", "to claim start", "claim", "to the task")
    parts: dict[str, list[float]] = {name: [] for name in names}
    for i, (ts, deferred) in sent.items():
        if i not in marks or i not in claimed:
            continue
        started, _, returned, _ = marks[i]
        begin = claimed[i]
        spans = (
            started - ts,
            deferred - ts,
            begin - deferred,
            returned - begin,
            started - returned,
        )
        for name, seconds in zip(names, spans, strict=True):
            parts[name].append(seconds * 1000)
    print(f"{len(parts['defer→start (total)'])} of {len(sent)} jobs started", file=sys.stderr)
    return parts, cpu_ms


def report(parts: dict[str, list[float]]) -> str:
    total = parts["defer→start (total)"]
    worst = sorted(range(len(total)), key=total.__getitem__)[-max(1, len(total) // 100) :]
    lines = [f"{'part':22} {'p50':>7} {'p95':>7} {'p99':>7}  {'slowest 1 %':>11}  (ms)"]
    for key, values in parts.items():
        lines.append(
            f"{key:22} {bench.pct(values, 50):7.2f} {bench.pct(values, 95):7.2f} "
            f"{bench.pct(values, 99):7.2f}  {statistics.mean(values[w] for w in worst):11.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("TRACEDJOBS_DATABASE_URL"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--secs", type=float, default=15.0)
    ap.add_argument("--telemetry", action="store_true", help="the SDK on in client and worker")
    ap.add_argument(
        "--client-export", choices=("thread", "process"), default="thread",
        help="with --telemetry: the deferring client's exporter (as bench.py's)",
    )  # fmt: skip
    a = ap.parse_args()
    if not a.database_url:
        print("error: give --database-url (or set $TRACEDJOBS_DATABASE_URL)", file=sys.stderr)
        return 2
    bench.CLIENT_EXPORT = a.client_export
    sdk = bench.telemetry_for_client() if a.telemetry else None
    try:
        parts, cpu_ms = asyncio.run(run(a.database_url, a.rate, a.secs))
    finally:
        if sdk is not None:
            sdk.shutdown()
        if bench.TELEMETRY is not None:
            bench.TELEMETRY.stop()
    print(report(parts))
    print(f"worker CPU per job (its process, the export child apart): {cpu_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
