"""Tasks the benchmark's worker processes import (``--app bench.bench_tasks:app``).

The App reads ``$TRACEDJOBS_DATABASE_URL``. ``lat`` appends the defer→start latency (seconds)
of each job to ``$BENCH_LAT_FILE``, one line per job.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

import tracedjobs

app = tracedjobs.App()
_lat_file: Any = None


# ``--job-ms`` of bench.py: each job waits this long (I/O-like work), 0 = a true no-op.
_JOB_SECONDS = float(os.environ.get("BENCH_JOB_MS", "0")) / 1000


@app.task(name="noop")
async def noop(ts: float = 0.0, i: int = 0) -> None:
    if _JOB_SECONDS:
        await anyio.sleep(_JOB_SECONDS)


@app.task(name="lat")
async def lat(ts: float = 0.0, i: int = 0) -> None:
    latency = time.time() - ts
    global _lat_file
    if _lat_file is None:
        _lat_file = open(os.environ["BENCH_LAT_FILE"], "a", buffering=1)  # noqa: SIM115
    _lat_file.write(f"{latency}\n")
