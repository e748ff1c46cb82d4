"""Defer one at a time, tracedjobs beside PgQueuer, in short interleaved rounds.

    .venv/bin/python bench/defer_interleaved.py [--rounds 8] [--n 2000] [--port 55433]

``run_all.py`` runs each tool's whole suite in turn, minutes apart; on a machine whose speed
drifts within minutes (seen here: the same measurement 2.4× apart in one run) its defer
ratios are mostly drift. This runs only the defer loop, a few seconds per measurement:
PgQueuer's ``enqueue1`` (``../shared/bench/peers``), then ours with telemetry off, ON with
the SDK's exporter threads in the deferring process, and ON with the export child
(``otel_sdk.configure(long_running=True)``), in a rotated order each round. It prints each
round's jobs/s and the median over rounds of each round's ratio to PgQueuer's.

Same private server, peers' venv and settings as ``run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_all import find_peers, log, peers_python, private_server  # noqa: E402

VARIANTS = {
    "off": [],
    "ON (exporter threads)": ["--telemetry"],
    "ON (export child)": ["--telemetry", "--client-export", "process"],
}


def pgqueuer(py: Path, peers: Path, port: int, n: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PG"))}
    env.update(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="postgres", BENCH_N=str(n))
    out = subprocess.run(
        [str(py), "bench_pgqueuer.py", "enqueue1", "--runs", "1"],
        cwd=peers, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(json.loads(out.strip().splitlines()[-1])["jobs_per_s"])


def ours(url: str, n: int, flags: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    cmd = [sys.executable, str(HERE / "bench.py"), "--database-url", url, "--only", "defer1"]
    proc = subprocess.run(
        [*cmd, "--n", str(n), *flags], env=env, capture_output=True, text=True, check=True
    )
    for line in proc.stderr.splitlines():
        if line.startswith("{") and '"defer1"' in line:
            return float(json.loads(line)["jobs_per_s"])
    raise RuntimeError(f"no defer1 result from bench.py: {proc.stderr[-500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n", type=int, default=2000, help="defers per measurement (2000)")
    ap.add_argument("--port", type=int, default=55433)
    ap.add_argument("--keep-server", action="store_true")
    ap.add_argument("--peers-dir")
    a = ap.parse_args()
    peers = find_peers(a.peers_dir)
    py = peers_python()
    names = ["PgQueuer", *VARIANTS]
    rows: list[dict[str, float]] = []
    with private_server(a.port, a.keep_server) as url:
        for rnd in range(a.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            row: dict[str, float] = {}
            for name in order:
                if name == "PgQueuer":
                    row[name] = pgqueuer(py, peers, a.port, a.n)
                else:
                    row[name] = ours(url, a.n, VARIANTS[name])
            rows.append(row)
            done = ", ".join(f"{k} {v:,.0f}" for k, v in row.items())
            log(f"round {rnd + 1}/{a.rounds}: {done}")
    print(
        f"defer one at a time, N={a.n:,} per measurement, {a.rounds} rounds "
        f"({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load {os.getloadavg()[0]:.2f})\n"
    )
    print("| | jobs/s, median [min–max] | ratio to PgQueuer in its round, median [min–max] |")
    print("|---|---|---|")
    for name in names:
        values = [r[name] for r in rows]
        ratios = [r[name] / r["PgQueuer"] for r in rows]
        ratio = (
            "" if name == "PgQueuer"
            else f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"
        )  # fmt: skip
        print(
            f"| {name} | {statistics.median(values):,.0f} "
            f"[{min(values):,.0f}–{max(values):,.0f}] | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
