"""tracedjobs benchmark: enqueue, drain and latency on a fresh database (a benchmark, not a test).

    /tmp/venv/bin/python bench/bench.py [--n 10000] [--database-url URL] [--runs K] [--quick]
                                        [--json-out FILE]

URL points at any database of the server to use (default $TRACEDJOBS_DATABASE_URL, else
postgresql://root@127.0.0.1:5432/test); each measurement drops and recreates the database
``tracedjobs_bench`` on that server and migrates it. The workload mirrors
/work/shared/bench/peers (no-op async jobs, one worker process):

- defer 1-by-1: one client, ``await noop.defer_async(...)`` N times (after one warm-up).
- batch defer: one ``await noop.batch_defer_async(*N kwargs)``.
- drain c=1 / c=10: N jobs pre-enqueued (+ VACUUM ANALYZE), then one
  ``tracedjobs worker --one-shot -c C`` process. jobs/s = N / (max(attempt finished_at) -
  min(attempt started_at)) read from the database; wall = process start → exit.
- latency: a worker process (default concurrency 1, LISTEN/NOTIFY) runs already; the client
  defers one job at a time at a steady rate; latency = time.time() at task start − the
  time.time() passed in the job's args.
- telemetry: drain c=10 with the SDK fully on (OTLP/HTTP to a local counting receiver,
  OTEL_METRIC_EXPORT_INTERVAL=1000) vs off (no OTEL_* variables), overhead in %.

Median of K runs, [min–max] when K > 1. The machine is shared: compare ratios measured in
the same window, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import otlp_receiver  # noqa: E402

import tracedjobs  # noqa: E402

BENCH_DB = "tracedjobs_bench"
# BENCH_APP: another app module (e.g. one patched to measure an older code path).
TASKS = os.environ.get("BENCH_APP", "bench.bench_tasks:app")


# -- database --------------------------------------------------------------------------------


def db_url(base: str, dbname: str) -> str:
    params = conninfo_to_dict(base)
    params["dbname"] = dbname
    return make_conninfo(**params)


def fresh_db(base: str) -> str:
    """Drop and recreate the bench database, migrate it; returns its URL."""
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    url = db_url(base, BENCH_DB)
    app = tracedjobs.App(database_url=url)
    app.job_manager.migrate()
    app.connector.close()
    return url


def make_app(url: str) -> tuple[tracedjobs.App, Any, Any]:
    app = tracedjobs.App(database_url=url)

    @app.task(name="noop")
    async def noop(ts: float = 0.0, i: int = 0) -> None:
        pass

    @app.task(name="lat")
    async def lat(ts: float = 0.0, i: int = 0) -> None:
        pass

    return app, noop, lat


def status_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM tracedjobs_jobs GROUP BY 1").fetchall()
        )


# -- worker process ----------------------------------------------------------------------------


# Set by --job-ms: how long each drained job takes (0 = no-op).
JOB_MS = 0.0


def worker_env(
    url: str, telemetry: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TRACEDJOBS_DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if telemetry:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = telemetry
        env["OTEL_METRIC_EXPORT_INTERVAL"] = "1000"
        env["OTEL_SERVICE_NAME"] = "tracedjobs-bench"
    env["BENCH_JOB_MS"] = str(JOB_MS)
    env.update(extra or {})
    return env


def worker_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("tracedjobs")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tracedjobs.cli"]
    return [*cmd, "worker", "--app", TASKS, *args]


# -- measurements ------------------------------------------------------------------------------


async def m_defer1(base: str, n: int) -> dict[str, Any]:
    url = fresh_db(base)
    app, noop, _ = make_app(url)
    await noop.defer_async(ts=time.time(), i=-1)  # open the pool
    t0 = time.perf_counter()
    for i in range(n):
        await noop.defer_async(ts=time.time(), i=i)
    dt = time.perf_counter() - t0
    await app.connector.close_async()
    return {"jobs_per_s": n / dt, "secs": dt}


async def m_bulk(base: str, n: int) -> dict[str, Any]:
    url = fresh_db(base)
    app, noop, _ = make_app(url)
    await noop.defer_async(ts=time.time(), i=-1)
    t0 = time.perf_counter()
    ids = await noop.batch_defer_async(*({"ts": time.time(), "i": i} for i in range(n)))
    dt = time.perf_counter() - t0
    await app.connector.close_async()
    assert len(ids) == n
    return {"jobs_per_s": n / dt, "secs": dt}


async def m_drain(base: str, n: int, concurrency: int, telemetry: bool = False) -> dict[str, Any]:
    url = fresh_db(base)
    app, noop, _ = make_app(url)
    await noop.batch_defer_async(*({"ts": time.time(), "i": i} for i in range(n)))
    await app.connector.close_async()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    receiver = otlp_receiver.start() if telemetry else None
    env = worker_env(url, receiver.url if receiver else None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        worker_cmd("--one-shot", "-c", str(concurrency)), env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"worker exited {proc.returncode}: {proc.stderr[-2000:]}")
    with psycopg.connect(url) as conn:
        db_secs, attempts = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8, count(*) "
            "FROM tracedjobs_attempts"
        ).fetchone()  # type: ignore[misc]
    counts = status_counts(url)
    if counts.get("succeeded") != n:
        raise RuntimeError(f"drain did not finish every job: {counts}")
    out = {
        "jobs_per_s": n / db_secs,
        "secs": db_secs,
        "wall_jobs_per_s": n / wall,
        "wall_secs": wall,
        "attempts": attempts,
    }
    if receiver is not None:
        time.sleep(0.2)
        out["otlp_posts"] = receiver.snapshot()
        receiver.shutdown()
        receiver.server_close()
        if not out["otlp_posts"].get("/v1/traces") or not out["otlp_posts"].get("/v1/metrics"):
            raise RuntimeError(f"telemetry ON but the receiver got {out['otlp_posts']}")
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


async def m_latency(base: str, rate: float, secs: float) -> dict[str, Any]:
    url = fresh_db(base)
    expected = int(rate * secs)
    with tempfile.NamedTemporaryFile("w", suffix=".lat", delete=False) as f:
        lat_file = f.name
    env = worker_env(url, extra={"BENCH_LAT_FILE": lat_file})
    proc = subprocess.Popen(
        worker_cmd(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        app, _, lat = make_app(url)
        deadline = time.time() + 30
        async with app.connector.connection_async() as conn:
            while True:
                cur = await conn.execute("SELECT count(*) FROM tracedjobs_workers")
                if (await cur.fetchone())[0]:  # type: ignore[index]
                    break
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("latency worker did not start")
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # LISTEN is set up right after registration
        t0 = time.perf_counter()
        for i in range(expected):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await lat.defer_async(ts=time.time(), i=i)
        producer_rate = expected / (time.perf_counter() - t0)
        await app.connector.close_async()
        deadline = time.time() + 60
        lats: list[float] = []
        while time.time() < deadline:
            lats = [float(x) * 1000 for x in Path(lat_file).read_text().split()]
            if len(lats) >= expected:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        Path(lat_file).unlink(missing_ok=True)
    if not lats:
        raise RuntimeError("no job started")
    return {
        "n": len(lats),
        "expected": expected,
        "producer_rate": producer_rate,
        "p50_ms": pct(lats, 50),
        "p95_ms": pct(lats, 95),
        "p99_ms": pct(lats, 99),
        "max_ms": max(lats),
    }


# -- report ------------------------------------------------------------------------------------


def fmt(vals: list[float], nd: int = 0) -> str:
    if not vals:
        return "-"
    f = f"{{:,.{nd}f}}"
    med = f.format(statistics.median(vals))
    return med if len(vals) == 1 else f"{med} [{f.format(min(vals))}–{f.format(max(vals))}]"


def table(res: dict[str, list[dict[str, Any]]], n: int, runs: int) -> str:
    def col(mode: str, key: str) -> list[float]:
        return [r[key] for r in res.get(mode, [])]

    overhead = [
        (off["jobs_per_s"] / on["jobs_per_s"] - 1) * 100
        for off, on in zip(res.get("drain_c10", []), res.get("drain_c10_otel", []), strict=False)
    ]
    posts = [r.get("otlp_posts", {}) for r in res.get("drain_c10_otel", [])]
    lat = res.get("latency", [])
    lat_note = ""
    if lat:
        started = min(r["n"] for r in lat)
        rate = fmt(col("latency", "producer_rate"), 1)
        lat_note = f" (started {started}/{lat[0]['expected']}, producer {rate}/s)"
    rows = [
        ("defer 1-by-1 (defer_async)", "jobs/s", fmt(col("defer1", "jobs_per_s"))),
        (f"batch_defer_async of {n:,}", "jobs/s", fmt(col("bulk", "jobs_per_s"))),
        ("drain c=1 (db: first start → last finish)", "jobs/s", fmt(col("drain_c1", "jobs_per_s"))),
        (
            "drain c=1 (wall, process start → exit)",
            "jobs/s",
            fmt(col("drain_c1", "wall_jobs_per_s")),
        ),
        ("drain c=10 (db)", "jobs/s", fmt(col("drain_c10", "jobs_per_s"))),
        ("drain c=10 (wall)", "jobs/s", fmt(col("drain_c10", "wall_jobs_per_s"))),
        ("latency p50" + lat_note, "ms", fmt(col("latency", "p50_ms"), 1)),
        ("latency p95", "ms", fmt(col("latency", "p95_ms"), 1)),
        ("latency p99", "ms", fmt(col("latency", "p99_ms"), 1)),
        ("latency max", "ms", fmt(col("latency", "max_ms"), 1)),
        ("drain c=10 telemetry OFF (db)", "jobs/s", fmt(col("drain_c10", "jobs_per_s"))),
        ("drain c=10 telemetry ON (db)", "jobs/s", fmt(col("drain_c10_otel", "jobs_per_s"))),
        ("telemetry overhead (OFF/ON − 1)", "%", fmt(overhead, 1)),
        (
            "OTLP POSTs received (traces/metrics)",
            "count",
            ", ".join(f"{p.get('/v1/traces', 0)}/{p.get('/v1/metrics', 0)}" for p in posts) or "-",
        ),
    ]
    w0 = max(len(r[0]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    title = (
        f"tracedjobs {tracedjobs.__version__}: N={n:,} no-op jobs, "
        f"median of {runs} run(s) [min–max]"
    )
    lines = [title, f"{'measurement':<{w0}}  {'unit':<6}  {'value':>{w2}}", "-" * (w0 + w2 + 10)]
    lines += [f"{a:<{w0}}  {b:<6}  {c:>{w2}}" for a, b, c in rows]
    return "\n".join(lines)


MODES = ["defer1", "bulk", "drain_c1", "drain_c10", "drain_c10_otel", "latency"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="jobs per measurement (default 10000)")
    ap.add_argument(
        "--database-url",
        default=os.environ.get("TRACEDJOBS_DATABASE_URL")
        or "postgresql://root@127.0.0.1:5432/test",
        help="any database on the server to use (the bench database is created next to it)",
    )
    ap.add_argument(
        "--runs", type=int, default=1, help="runs per measurement; the table shows the median"
    )
    ap.add_argument("--quick", action="store_true", help="N=2000, 5 s of latency, 1 run")
    ap.add_argument("--lat-rate", type=float, default=100.0)
    ap.add_argument("--lat-secs", type=float, default=15.0)
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--json-out", help="append one JSON line per measurement run to this file")
    ap.add_argument(
        "--job-ms", type=float, default=0.0,
        help="each drained job awaits this many ms (I/O-like work; default 0 = no-op)",
    )
    a = ap.parse_args()
    global JOB_MS
    JOB_MS = a.job_ms
    if a.quick:
        a.n, a.lat_secs, a.runs = min(a.n, 2000), 5.0, 1
    modes = a.only.split(",") if a.only else MODES
    unknown = set(modes) - set(MODES)
    if unknown:
        print(f"error: unknown mode(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    runners = {
        "defer1": lambda: m_defer1(a.database_url, a.n),
        "bulk": lambda: m_bulk(a.database_url, a.n),
        "drain_c1": lambda: m_drain(a.database_url, a.n, 1),
        "drain_c10": lambda: m_drain(a.database_url, a.n, 10),
        "drain_c10_otel": lambda: m_drain(a.database_url, a.n, 10, telemetry=True),
        "latency": lambda: m_latency(a.database_url, a.lat_rate, a.lat_secs),
    }
    res: dict[str, list[dict[str, Any]]] = {}
    out = open(a.json_out, "a") if a.json_out else None  # noqa: SIM115
    try:
        for run in range(a.runs):
            for mode in modes:
                r = asyncio.run(runners[mode]())
                r.update(
                    mode=mode,
                    run=run + 1,
                    n=r.get("n", a.n),
                    at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                )
                res.setdefault(mode, []).append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
                if out:
                    print(json.dumps(r), file=out, flush=True)
    except psycopg.OperationalError as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if out:
            out.close()
        try:
            with psycopg.connect(a.database_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        except psycopg.Error:
            pass
    print(table(res, a.n, a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
