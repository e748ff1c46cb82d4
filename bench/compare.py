"""Compare a tracedjobs bench run with the peers measured in the same window.

    python bench/compare.py DIR [DIR ...]

Each DIR holds ``tracedjobs.jsonl`` (bench.py --json-out) and the peers' ``procrastinate.jsonl``
/ ``pgqueuer.jsonl`` (/work/shared/bench/peers/bench_*.py). Prints one markdown table per DIR
with ours / peer ratios (throughput: > 1 means we are faster; latency: < 1 means we are faster).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    # (label, our mode, our key, peer mode, peer key, higher is better)
    ("defer 1-by-1 jobs/s", "defer1", "jobs_per_s", "enqueue1", "jobs_per_s", True),
    ("bulk defer jobs/s", "bulk", "jobs_per_s", "bulk", "jobs_per_s", True),
    ("drain c=1 jobs/s ¹", "drain_c1", "jobs_per_s", "drain_default", "jobs_per_s", True),
    ("drain c=10 jobs/s", "drain_c10", "jobs_per_s", "drain_c10", "jobs_per_s", True),
    ("latency p50 ms", "latency", "p50_ms", "latency", "p50_ms", False),
    ("latency p95 ms", "latency", "p95_ms", "latency", "p95_ms", False),
    ("latency p99 ms", "latency", "p99_ms", "latency", "p99_ms", False),
]


def load(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                out[r["mode"]].append(r)
    return out


def med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def num(v: float | None, nd: int) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def table(d: Path) -> str:
    ours = load(d / "tracedjobs.jsonl")
    peers = {p: load(d / f"{p}.jsonl") for p in ("procrastinate", "pgqueuer")}
    head = (
        "| measurement | tracedjobs | procrastinate | pgqueuer "
        "| ours / procrastinate | ours / pgqueuer |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for label, om, ok, pm, pk, _higher in COLUMNS:
        nd = 1 if "ms" in label else 0
        o = med(ours.get(om, []), ok)
        cells = [label, num(o, nd)]
        ratios = []
        for p in ("procrastinate", "pgqueuer"):
            v = med(peers[p].get(pm, []), pk)
            cells.append(num(v, nd))
            ratios.append("-" if (o is None or not v) else f"{o / v:.2f}")
        lines.append("| " + " | ".join(cells + ratios) + " |")
    off, on = (
        med(ours.get("drain_c10", []), "jobs_per_s"),
        med(ours.get("drain_c10_otel", []), "jobs_per_s"),
    )
    if off and on:
        lines.append(
            f"| drain c=10 telemetry ON jobs/s (OFF {off:,.0f}) "
            f"| {on:,.0f} (overhead {(off / on - 1) * 100:.0f} %) "
            "| - | - | - | - |"
        )
    walls = [(m, med(ours.get(m, []), "wall_jobs_per_s")) for m in ("drain_c1", "drain_c10")]
    notes = ", ".join(f"{m} {v:,.0f}" for m, v in walls if v)
    if notes:
        lines.append(f"\ntracedjobs drain wall time (process start → exit) jobs/s: {notes}.")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: compare.py DIR [DIR ...]", file=sys.stderr)
        return 2
    for arg in sys.argv[1:]:
        d = Path(arg)
        window = (d / "window.txt").read_text().split() if (d / "window.txt").exists() else []
        print(f"### {d.name} {' '.join(window)}\n")
        print(table(d))
        print()
    print(
        "¹ peers' default concurrency: procrastinate 1; pgqueuer batch_size=10 with no "
        "concurrency limit (so its 'c=1' column is not c=1)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
