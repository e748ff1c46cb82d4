"""Tasks the benchmark's worker processes import (``--app bench.bench_tasks:app``).

The App reads ``$TRACEDJOBS_DATABASE_URL``. ``lat`` records the defer→start latency (seconds)
of each job; a thread appends them to ``$BENCH_LAT_FILE``, one line per job.
"""

from __future__ import annotations

import os
import threading
import time

import anyio

import tracedjobs

app = tracedjobs.App()


# ``--job-ms`` of bench.py: each job waits this long (I/O-like work), 0 = a true no-op.
_JOB_SECONDS = float(os.environ.get("BENCH_JOB_MS", "0")) / 1000


@app.task(name="noop")
async def noop(ts: float = 0.0, i: int = 0) -> None:
    if _JOB_SECONDS:
        await anyio.sleep(_JOB_SECONDS)


@app.task(name="lat")
async def lat(ts: float = 0.0, i: int = 0) -> None:
    latencies.append(time.time() - ts)
    global _writer
    if _writer is None:
        _writer = threading.Thread(target=_write_latencies, daemon=True)
        _writer.start()


# Written by a thread, not by the task: a write() that blocks on a busy disk (this machine
# showed several % of full I/O stalls) must not stall the event loop and the jobs after it.
# The peers' latency runs keep theirs in memory too.
latencies: list[float] = []
_writer: threading.Thread | None = None


def _write_latencies() -> None:
    with open(os.environ["BENCH_LAT_FILE"], "a") as f:
        done = 0
        while True:
            time.sleep(0.1)
            new, done = latencies[done:], len(latencies)
            if new:
                f.write("".join(f"{x}\n" for x in new))
                f.flush()
