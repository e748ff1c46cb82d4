"""A test app for the alert incident tests and the dashboard tests, and a producer process.

Tasks touch nothing but the clock (an outage of the database must not make them fail).

``python -m tests.apps.incidents --metrics-port P --task T --rate R [--args-file F]
[--count N] [--queue Q]`` runs a producer: it defers ``R`` jobs a second (one batch per
tick) until ``N`` are deferred or it gets SIGTERM, re-reading the task's JSON arguments
from ``F`` before each batch (so a test can change them mid-run), and serves its metrics
(``messaging_client_sent_messages_total``) on ``P`` the way a worker does, until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

import tracedjobs

app = tracedjobs.App()


@app.task(name="work")
async def work(sleep: float = 0.0) -> None:
    await anyio.sleep(sleep)


@app.task(name="poison", retry=2)
async def poison() -> None:
    raise ValueError("poison pill")


@app.task(name="flaky", retry=1, pass_context=True)
async def flaky(context: tracedjobs.JobContext) -> None:
    """Fails its first attempt, succeeds on the retry."""
    if context.job.attempts == 0:
        raise ConnectionError("first attempt fails")


def _arguments(args_file: Path | None) -> dict[str, Any]:
    return dict(json.loads(args_file.read_text())) if args_file else {}


def produce(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.incidents")
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--queue", default=None)
    parser.add_argument("--rate", type=float, required=True, help="jobs per second")
    parser.add_argument("--count", type=int, default=None, help="stop deferring after N jobs")
    parser.add_argument("--args-file", type=Path, default=None)
    parser.add_argument("--max-seconds", type=float, default=600, help="exit after this long")
    options = parser.parse_args(argv)

    from tracedjobs import otel_sdk

    sdk = otel_sdk.configure(
        default_service_name="tracedjobs-producer", metrics_port=options.metrics_port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deferrer = app.configure_task(
        options.task, **({"queue": options.queue} if options.queue else {})
    )
    started = time.monotonic()
    deferred = 0
    print("producing", flush=True)
    try:
        while not stop.is_set() and time.monotonic() - started < options.max_seconds:
            due = int(options.rate * (time.monotonic() - started)) - deferred
            if options.count is not None:
                due = min(due, options.count - deferred)
            if due > 0:
                arguments = _arguments(options.args_file)
                deferrer.batch_defer(*[arguments] * due)
                deferred += due
            stop.wait(0.1)
    finally:
        app.close()
        sdk.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(produce(sys.argv[1:]))
