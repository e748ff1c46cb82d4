"""The app of ``bench/latency_breakdown.py``'s worker: the bench's ``lat`` task, and marks of
where each job's start went inside the worker (wrapping two of its methods, this process
only). Each started job appends one line to ``$BENCH_MARKS_FILE``:
``i task_start exchange_called exchange_returned run_job_entered`` (epoch seconds)."""

from __future__ import annotations

import os
import time
from typing import Any

import tracedjobs
from tracedjobs import store, worker

app = tracedjobs.App()
_out = open(os.environ["BENCH_MARKS_FILE"], "a", buffering=1)  # noqa: SIM115
_marks: dict[str, float] = {}


@app.task(name="lat")
async def lat(ts: float = 0.0, i: int = 0) -> None:
    now = time.time()
    _out.write(f"{i} {now} {_marks['called']} {_marks['returned']} {_marks['run']}\n")


_finish_and_claim = store.PostgresStore.finish_and_claim
_run_job = worker.Worker._run_job


async def _timed_exchange(self: Any, *args: Any, **kwargs: Any) -> Any:
    called = time.time()
    batch = await _finish_and_claim(self, *args, **kwargs)
    if batch.claimed:
        _marks["called"], _marks["returned"] = called, time.time()
    return batch


async def _timed_run_job(self: Any, row: Any) -> None:
    _marks["run"] = time.time()
    await _run_job(self, row)


store.PostgresStore.finish_and_claim = _timed_exchange  # type: ignore[method-assign]
worker.Worker._run_job = _timed_run_job  # type: ignore[method-assign]
