"""The table of a ``bench/run_all.py`` run: tracedjobs (telemetry off and on) beside the peers.

    python bench/compare.py DIR [DIR ...]

Each DIR holds ``tracedjobs.jsonl`` (bench.py --json-out; records carry ``telemetry``), the
peers' ``procrastinate.jsonl`` / ``pgqueuer.jsonl`` (../shared/bench/peers/bench_*.py),
optionally ``pgbench.jsonl``, ``floor.jsonl`` (bench/latency_floor.py) and
``otel_floor.txt``. Prints markdown: medians over the runs in DIR, ratios ours / peer
(throughput: > 1 means we are faster; latency: < 1 means we are faster), then our scaling,
per-job database work, the bare queue's latency and the telemetry cost per job.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

PEERS = ("procrastinate", "pgqueuer")

# (label, our mode, key, peer mode, higher is better)
MAIN_ROWS = [
    ("defer 1-by-1 jobs/s", "defer1", "jobs_per_s", "enqueue1", True),
    ("bulk defer jobs/s", "bulk", "jobs_per_s", "bulk", True),
    ("drain, ours c=1 vs peers' default ¹ jobs/s", "drain_c1", "jobs_per_s", "drain_default", True),
    ("drain c=10 jobs/s", "drain_c10", "jobs_per_s", "drain_c10", True),
    ("drain, our best ² vs peers' default ¹ jobs/s", "drain_best", "jobs_per_s", "drain_default",
     True),
    ("defer→start p50 ms @100/s", "latency", "p50_ms", "latency", False),
    ("defer→start p95 ms @100/s", "latency", "p95_ms", "latency", False),
    ("defer→start p99 ms @100/s", "latency", "p99_ms", "latency", False),
    ("defer→start p50 ms @100/s, ours c=10 ⁴", "latency_c10", "p50_ms", "latency", False),
    ("defer→start p95 ms @100/s, ours c=10 ⁴", "latency_c10", "p95_ms", "latency", False),
    ("defer→start p99 ms @100/s, ours c=10 ⁴", "latency_c10", "p99_ms", "latency", False),
]  # fmt: skip


LIFECYCLE_KEYS = [
    ("statements_per_job", "statements (pg_stat_statements calls)"),
    ("commits_per_job", "commits"),
    ("wal_bytes_per_job", "WAL bytes"),
]


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]


def by_mode(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[r["mode"]].append(r)
    return out


def med(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def num(v: float | None, nd: int = 0) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def floor_of(d: Path) -> dict[str, Any] | None:
    path = d / "otel_floor.txt"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("FLOOR_JSON "):
            return json.loads(line[len("FLOOR_JSON ") :])
    return None


def table(d: Path) -> str:
    ours = load(d / "tracedjobs.jsonl")
    off = by_mode([r for r in ours if not r.get("telemetry")])
    on = by_mode([r for r in ours if r.get("telemetry") and r.get("client_export") != "process"])
    on_child = by_mode([r for r in ours if r.get("client_export") == "process"])
    peers = {p: by_mode(load(d / f"{p}.jsonl")) for p in PEERS}
    lines = [
        "| measurement | tracedjobs off | tracedjobs ON | Procrastinate | PgQueuer "
        "| off / Procr. | off / PgQ | ON / PgQ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, mode, key, peer_mode, _higher in MAIN_ROWS:
        nd = 1 if "ms" in label else 0
        o, t = med(off.get(mode, []), key), med(on.get(mode, []), key)
        pr, pq = (med(peers[p].get(peer_mode, []), key) for p in PEERS)
        cells = [label, num(o, nd), num(t, nd), num(pr, nd), num(pq, nd)]
        cells += [ratio(o, pr), ratio(o, pq), ratio(t, pq)]
        lines.append("| " + " | ".join(cells) + " |")
        if mode in ("defer1", "bulk") and on_child.get(mode):
            # The same with a producer that ships its send spans to tracedjobs' export child.
            c = med(on_child[mode], key)
            cells = [f"{label.replace(' jobs/s', '')}, producer with the export child ³ jobs/s",
                     "", num(c, nd), "", "", "", "", ratio(c, pq)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")

    best = off.get("drain_best", [{}])[0].get("concurrency")
    lines.append("")
    lines.append(
        "¹ peers' defaults: Procrastinate concurrency 1; PgQueuer batch_size 10, no concurrency "
        f"limit, completions buffered (not durable when the next job starts). ² our best: c={best}."
        " ³ telemetry ON in the deferring process through `otel_sdk.configure(long_running=True)`"
        " (spans encoded in its export child) instead of the SDK's exporter threads."
        " ⁴ our latency worker at concurrency 10, as PgQueuer's default claims up to 10 at once"
        " (Procrastinate's is concurrency 1: compare it with the rows above)."
    )
    lines.append("")
    lines.append("| tracedjobs, more | value |")
    lines.append("|---|---|")

    def add(label: str, value: str) -> None:
        if value not in ("-", ""):
            lines.append(f"| {label} | {value} |")

    for procs, mode in ((1, "drain_c10"), (2, "drain_procs2"), (4, "drain_procs4")):
        add(
            f"drain jobs/s, {procs} worker process(es) × c=10",
            num(med(off.get(mode, []), "jobs_per_s")),
        )
    add(
        "connections held by one worker (max seen)",
        num(med(off.get("drain_c10", []), "conns_per_worker")),
    )
    add(
        f"connections held by one worker at c={best}",
        num(med(off.get("drain_best", []), "conns_per_worker")),
    )
    for mode in ("scale_10k", "scale_100k", "scale_1m"):
        rows = off.get(mode, [])
        if rows:
            sample = rows[0]["attempts"]
            add(f"drain c=10 jobs/s from a backlog of {mode[6:]} (first {sample:,})",
                num(med(rows, "jobs_per_s")))  # fmt: skip
    for phase in ("defer", "drain"):
        rows = [r[phase] for r in off.get("lifecycle", [])]
        for key, label in LIFECYCLE_KEYS:
            add(f"{phase} (1-by-1 / c=10): {label} per job", num(med(rows, key), 2))
    for r in load(d / "pgbench.jsonl"):
        add(f"raw SQL job lifecycle (pgbench, {r['mode']}) jobs/s", num(r["jobs_per_s"]))
    floor_rows = load(d / "floor.jsonl")
    if floor_rows:
        ps = [med(floor_rows, f"p{p}_ms") for p in (50, 95, 99)]
        add(
            "defer→start p50 / p95 / p99 ms @100/s, bare raw-SQL queue (latency_floor.py)",
            " / ".join(num(p, 1) for p in ps),
        )
        for label, rows in (("off", off), ("ON", on)):
            for mode, c in (("latency", 1), ("latency_c10", 10)):
                mine = [med(rows.get(mode, []), f"p{p}_ms") for p in (50, 95, 99)]
                add(
                    f"defer→start p50 / p95 / p99, tracedjobs {label} c={c} / bare raw-SQL queue",
                    " / ".join(ratio(m, p) for m, p in zip(mine, ps, strict=True)),
                )

    # Telemetry cost per job: 1/drain_on − 1/drain_off, against the bare SDK's own cost.
    lines.append("")
    floor = floor_of(d)
    pairs = [
        ("c=10, adjacent runs", "drain_c10", "drain_c10_otel"),
        ("c=10 with 5 ms jobs, adjacent runs", "drain_c10_5ms", "drain_c10_5ms_otel"),
        (
            "c=10 prefetch 20 with 5 ms jobs, adjacent runs",
            "drain_c10_5ms_pf20",
            "drain_c10_5ms_pf20_otel",
        ),
        ("c=10, telemetry-on run", "drain_c10", "drain_c10"),
        (f"c={best}, telemetry-on run", "drain_best", "drain_best"),
    ]
    for label, off_mode, on_mode in pairs:
        o, t = med(off.get(off_mode, []), "jobs_per_s"), med(on.get(on_mode, []), "jobs_per_s")
        if not (o and t):
            continue
        cost = (1 / t - 1 / o) * 1e6
        text = f"telemetry cost per job, drain {label}: {cost:,.0f} µs (on/off {t / o:.2f})"
        cpu_off = med(off.get(off_mode, []), "worker_cpu_us_per_job")
        cpu_on = med(on.get(on_mode, []), "worker_cpu_us_per_job")
        child = med(on.get(on_mode, []), "export_child_cpu_us_per_job") or 0.0
        if cpu_off and cpu_on:
            text += (
                f"; worker CPU/job {cpu_off:,.0f} → {cpu_on:,.0f} µs (+{cpu_on - cpu_off:,.0f}), "
                f"export child {child:,.0f} µs (both incl. start-up)"
            )
        if floor:
            text += (
                f"; bare SDK floor {floor['floor_cpu_us']:.0f} µs CPU in-process "
                f"({floor['floor_child_cpu_us']:.0f} µs with the export child)"
            )
        lines.append(f"- {text}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: compare.py DIR [DIR ...]", file=sys.stderr)
        return 2
    for arg in sys.argv[1:]:
        d = Path(arg)
        window = (d / "window.txt").read_text().strip() if (d / "window.txt").exists() else ""
        print(f"### {d.name} {window}\n")
        print(table(d))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
