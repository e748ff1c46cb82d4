"""tracedjobs beside the peers, in one invocation, on a private PostgreSQL: the table with ratios.

    .venv/bin/python bench/run_all.py [--quick] [--rounds 2] [--n 5000] [--with-1m]
                                      [--port 55433] [--keep-server] [--skip-peers]

1. Starts a private PostgreSQL 15 (``initdb`` in a temporary directory, port ``--port``,
   ``shared_preload_libraries=pg_stat_statements``, ``max_connections=200``), stopped at the
   end unless ``--keep-server``.
2. Installs the peers (Procrastinate, PgQueuer + asyncpg) in their own venv under
   ``bench/results/venv-peers`` (git-ignored; once) and runs their scripts from
   ``../shared/bench/peers`` (``--peers-dir`` or $BENCH_PEERS_DIR to point elsewhere).
3. Runs ``bench/bench.py`` with telemetry off, then on (OTLP/HTTP to a counting receiver),
   ``bench/latency_floor.py`` (a bare raw-SQL queue's defer→start: the machine's floor) and
   the raw-SQL job lifecycle of ``../shared/bench/peers/pgbench`` with pgbench.
4. Repeats 1 per round, peers and tracedjobs in alternating order (``--rounds``), then prints
   ``bench/compare.py``'s table (medians over rounds, ratios ours / peer) and writes it to
   the run's directory ``bench/results/run-<time>/table.md`` with every raw JSON line.

``--quick`` (N=2,000, 5 s of latency, 1 round, backlogs 10k and 100k, short pgbench): a few
minutes. ``bench/otel_floor.py`` (the SDK's own cost per job) is run too unless --skip-floor.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PEER_PINS = ["procrastinate==3.10.0", "pgqueuer==1.6.0", "asyncpg"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def find_peers(arg: str | None) -> Path:
    # The shared dir sits beside the repository (../shared), or beside its worktree folder.
    candidates = [
        arg,
        os.environ.get("BENCH_PEERS_DIR"),
        str(ROOT.parent / "shared/bench/peers"),
        str(ROOT.parent.parent / "shared/bench/peers"),
    ]
    for c in candidates:
        if c and (Path(c) / "bench_pgqueuer.py").exists():
            return Path(c).resolve()
    raise SystemExit(
        "error: the peers' scripts (../shared/bench/peers) were not found; pass --peers-dir"
    )


# -- private server ----------------------------------------------------------------------------


def pg_bin() -> Path:
    for version in ("15", "16", "17", "14", "13"):
        p = Path(f"/usr/lib/postgresql/{version}/bin")
        if (p / "initdb").exists():
            return p
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise SystemExit("error: PostgreSQL server binaries (initdb, pg_ctl) not found")


def as_pg_user(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as the 'postgres' OS user then."""
    if os.geteuid() != 0:
        return cmd
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(_quote, cmd))]


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@contextlib.contextmanager
def private_server(port: int, keep: bool) -> Iterator[str]:
    bindir = pg_bin()
    base = Path(tempfile.gettempdir()) / f"tracedjobs-bench-{port}"
    data = base / "pgdata"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    running = (
        subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]
        ).returncode
        == 0
    )
    started = False
    if not running:
        if not (data / "PG_VERSION").exists():
            log(f"initdb {data}")
            subprocess.run(
                as_pg_user(
                    [str(bindir / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data)]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        opts = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_preload_libraries=pg_stat_statements"
        )
        log(f"starting PostgreSQL on 127.0.0.1:{port}")
        subprocess.run(
            as_pg_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(base / "pg.log"),
                    "-w",
                    "-o",
                    opts,
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        started = True
    try:
        yield url
    finally:
        if started and not keep:
            log("stopping PostgreSQL")
            subprocess.run(
                as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                stdout=subprocess.DEVNULL,
            )


# -- peers -----------------------------------------------------------------------------------


def peers_python() -> Path:
    venv = RESULTS / "venv-peers"
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"creating {venv} with {' '.join(PEER_PINS)}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PINS], check=True)
    return py


def run_peer(
    py: Path, peers: Path, script: str, modes: str, out: Path, env: dict[str, str]
) -> None:
    log(f"{script} {modes}")
    with open(out, "a") as f:
        proc = subprocess.run(
            [str(py), script, modes, "--runs", "1"],
            cwd=peers,
            env=env,
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
        )
    if proc.returncode != 0:
        log(f"{script} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")


def run_pgbench(peers: Path, url_env: dict[str, str], secs: int, out: Path) -> None:
    """Raw SQL: the 3-statement job lifecycle, claim the oldest (SKIP LOCKED), 4 clients."""
    import json

    bindir = pg_bin()
    psql = [str(bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1"]
    env = {**os.environ, **url_env}
    subprocess.run(
        [
            *psql,
            "-d",
            "postgres",
            "-c",
            "DROP DATABASE IF EXISTS pgbench",
            "-c",
            "CREATE DATABASE pgbench",
        ],
        env=env,
        check=True,
    )
    subprocess.run(
        [*psql, "-d", "pgbench", "-f", str(peers / "pgbench/schema.sql")],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    for clients in (4, 10):
        log(f"pgbench lifecycle_any -c {clients} -T {secs}")
        proc = subprocess.run(
            [
                str(bindir / "pgbench"),
                "-n",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(secs),
                "-f",
                str(peers / "pgbench/lifecycle_any.sql"),
                "pgbench",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        tps = [line for line in proc.stdout.splitlines() if line.startswith("tps")]
        if proc.returncode != 0 or not tps:
            log(f"pgbench failed: {proc.stderr.strip()[-800:]}")
            continue
        value = float(tps[0].split("=")[1].split()[0])
        with open(out, "a") as f:
            print(
                json.dumps(
                    {
                        "peer": "raw SQL (pgbench)",
                        "mode": f"lifecycle_c{clients}",
                        "jobs_per_s": value,
                        "secs": secs,
                    }
                ),
                file=f,
            )


# -- tracedjobs --------------------------------------------------------------------------------


def run_floor(args: argparse.Namespace, url: str, out: Path) -> None:
    """bench/latency_floor.py: a bare raw-SQL queue's defer→start, the machine's own floor."""
    log("latency_floor.py")
    cmd = [sys.executable, str(HERE / "latency_floor.py"), "--database-url", url]
    cmd += ["--secs", str(args.lat_secs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"latency_floor.py failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    with open(out, "a") as f:
        f.write(proc.stdout)


def run_ours(
    args: argparse.Namespace, url: str, out: Path, telemetry: bool, client_export: str = "thread"
) -> None:
    cmd = [
        sys.executable,
        str(HERE / "bench.py"),
        "--database-url",
        url,
        "--json-out",
        str(out),
        "--n",
        str(args.n),
        "--lat-secs",
        str(args.lat_secs),
        "--runs",
        "1",
        "--scale-sample",
        str(args.scale_sample),
    ]
    if telemetry and client_export == "process":
        # The producer set up with tracedjobs' export child (its send spans on the direct path).
        cmd += ["--telemetry", "--client-export", "process", "--only", "defer1,bulk"]
    elif telemetry:
        cmd += ["--telemetry", "--only", "defer1,bulk,drain_c10,drain_best,latency,latency_c10"]
    else:
        modes = [
            "defer1",
            "bulk",
            "drain_c1",
            "drain_c10",
            "drain_c10_otel",  # right after drain_c10: an on/off pair seconds apart
            "drain_c10_5ms",  # the same pair with 5 ms jobs
            "drain_c10_5ms_otel",
            "drain_c10_5ms_pf20",  # and with prefetch 20
            "drain_c10_5ms_pf20_otel",
            "drain_best",
            "drain_procs2",
            "drain_procs4",
            "latency",
            "latency_c10",
            "lifecycle",
            *args.scales,
        ]
        cmd += ["--only", ",".join(modes)]
    log(f"tracedjobs bench.py telemetry {'ON' if telemetry else 'off'}"
        + (" (producer with the export child)" if client_export == "process" else ""))
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        log(f"bench.py failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: N=2000, 1 round")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, alternating order (2)")
    ap.add_argument("--n", type=int, default=5000, help="jobs per measurement (5000)")
    ap.add_argument("--lat-secs", type=float, default=15.0)
    ap.add_argument("--scale-sample", type=int, default=20_000)
    ap.add_argument("--with-1m", action="store_true", help="also a 1M-job backlog (long)")
    ap.add_argument("--port", type=int, default=55433, help="private server port (55433)")
    ap.add_argument("--keep-server", action="store_true")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument("--peers-dir")
    ap.add_argument("--out", help="results directory (default bench/results/run-<time>)")
    args = ap.parse_args()
    args.scales = ["scale_10k", "scale_100k"] + (["scale_1m"] if args.with_1m else [])
    pgbench_secs = 10
    if args.quick:
        args.n, args.lat_secs, args.rounds = min(args.n, 2000), 5.0, 1
        args.scale_sample = min(args.scale_sample, 5000)
        pgbench_secs = 5
    peers = find_peers(args.peers_dir)
    out = Path(args.out or RESULTS / time.strftime("run-%Y%m%dT%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    py = None if args.skip_peers else peers_python()
    with private_server(args.port, args.keep_server) as url:
        peer_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PG"))},
            "PGHOST": "127.0.0.1",
            "PGPORT": str(args.port),
            "PGUSER": "postgres",
            "BENCH_N": str(args.n),
            "LAT_SECS": str(args.lat_secs),
        }
        # The peers' latency runs write their files there.
        (Path(tempfile.gettempdir()) / "peers").mkdir(exist_ok=True)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for rnd in range(args.rounds):
            steps = []
            if py is not None:
                steps += [
                    lambda: run_peer(
                        py,
                        peers,
                        "bench_procrastinate.py",
                        "enqueue1,bulk,drain_default,drain_c10,latency",
                        out / "procrastinate.jsonl",
                        peer_env,
                    ),
                    lambda: run_peer(
                        py,
                        peers,
                        "bench_pgqueuer.py",
                        "enqueue1,bulk,drain_default,drain_c10,latency",
                        out / "pgqueuer.jsonl",
                        peer_env,
                    ),
                ]
            ours = [
                lambda: run_floor(args, url, out / "floor.jsonl"),
                lambda: run_ours(args, url, out / "tracedjobs.jsonl", telemetry=False),
                lambda: run_ours(args, url, out / "tracedjobs.jsonl", telemetry=True),
                lambda: run_ours(
                    args, url, out / "tracedjobs.jsonl", telemetry=True, client_export="process"
                ),
            ]
            log(f"round {rnd + 1}/{args.rounds}")
            for step in (steps + ours) if rnd % 2 == 0 else (ours + steps):
                step()
        run_pgbench(
            peers,
            {"PGHOST": "127.0.0.1", "PGPORT": str(args.port), "PGUSER": "postgres"},
            pgbench_secs,
            out / "pgbench.jsonl",
        )
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "window.txt").write_text(
        f"start {start} end {end} load {os.getloadavg()[0]:.2f} n {args.n} rounds {args.rounds}\n"
    )
    if not args.skip_floor:
        log("bench/otel_floor.py")
        floor = subprocess.run(
            [sys.executable, str(HERE / "otel_floor.py"), "--json"]
            + (["--n", "2000", "--runs", "3", "--stall-secs", "2"] if args.quick else []),
            capture_output=True,
            text=True,
        )
        (out / "otel_floor.txt").write_text(floor.stdout + floor.stderr)
    table = subprocess.run(
        [sys.executable, str(HERE / "compare.py"), str(out)], capture_output=True, text=True
    )
    (out / "table.md").write_text(table.stdout)
    print(table.stdout)
    if table.returncode != 0:
        print(table.stderr, file=sys.stderr)
    log(f"results in {out}")
    return table.returncode


if __name__ == "__main__":
    sys.exit(main())
