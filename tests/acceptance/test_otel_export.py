"""Telemetry exported from a child process (TRACEDJOBS_OTEL_EXPORT=process, the default) vs the
SDK's own threads (=thread): same spans at a real OTLP receiver, and exits that never wait on
an unreachable collector for more than the shutdown timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, WorkerProcess, cli_env, run_cli, scalar, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

APP = "tests.apps.otel:app"
WORKER_ARGS = ("--heartbeat-interval", "0.5", "--stalled-timeout", "2", "--polling-interval", "0.5")
# What an exit may take at most here, telemetry included (the bound itself is 1 s; a busy
# 2-core machine needs slack for Python start-up). Before this change: 22 s for `defer`.
EXIT_LIMIT = 8.0


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


FINISHED = "SELECT count(*) FROM tracedjobs_jobs WHERE status IN ('succeeded', 'failed')"


def unreachable_endpoint() -> str:
    with socket.socket() as s:  # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def export_children(pid: int) -> list[int]:
    """Child processes of ``pid`` running the exporter."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"tracedjobs.otel_export" in cmdline:
                out.append(int(child))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_jobs(db_url: str, receiver: OtlpReceiver, tmp_path: Path, mode: str) -> dict[str, Any]:
    """`tracedjobs defer` ×2 and a worker that runs them, exporting in ``mode``."""
    # A generous exit bound: this test is about what arrives (a loaded machine can take
    # seconds to start the export child of a short `defer`; the bound has its own tests).
    env = receiver.env(TRACEDJOBS_OTEL_EXPORT=mode, TRACEDJOBS_OTEL_SHUTDOWN_TIMEOUT="15")
    ids = {}
    for task in ("traced", "broken"):
        result = run_cli(db_url, "defer", "--app", APP, task, "{}", **env)
        assert result.returncode == 0, result.stderr
        ids[task] = int(result.stdout)
    worker = WorkerProcess(db_url, APP, *WORKER_ARGS, log_path=tmp_path / f"{mode}.log", **env)
    try:
        worker.wait_for_output("started")
        children = export_children(worker.pid)
        wait_until(
            lambda: scalar(db_url, FINISHED) == 2,
            60,
            "both jobs finished",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.output()
    finally:
        worker.stop()
    # Everything was flushed at exit (the 1 s bound is ample for a reachable receiver).
    # 2 send spans, 3 attempts (broken retries once), 1 span inside the traced task.
    spans = wait_until(lambda: len(receiver.spans) >= 6 and receiver.spans, 10, "all spans")
    return {"ids": ids, "spans": list(spans), "children": children}


def shape(span: ReceivedSpan, send_ids: dict[str, tuple[str, str]]) -> tuple[Any, ...]:
    """What must not depend on the export path: everything but ids and times."""
    attributes = {
        k: v for k, v in span.attributes.items()
        if k not in ("messaging.message.id", "tracedjobs.worker.name")
    }  # fmt: skip
    events = [
        (name, {k: v for k, v in attrs.items() if k != "exception.stacktrace"})
        for name, attrs in span.events
    ]
    resource = {k: v for k, v in span.resource.items() if k != "service.instance.id"}
    links = [(li.trace_id, li.span_id) in send_ids.values() for li in span.links]
    return (
        span.name, span.kind, sorted(attributes.items()), events, span.status,
        span.status_message, links, bool(span.parent_span_id), sorted(resource.items()),
        span.scope, span.end_ns >= span.start_ns > 0,
    )  # fmt: skip


def test_the_export_process_delivers_the_same_spans_as_the_in_process_exporter(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
):
    shapes = {}
    for mode in ("thread", "process"):
        r = OtlpReceiver()
        try:
            scalar(db_url, "TRUNCATE tracedjobs_jobs CASCADE")
            got = run_jobs(db_url, r, tmp_path, mode)
        finally:
            r.close()
        assert (len(got["children"]) == 1) == (mode == "process"), got["children"]
        spans = got["spans"]
        sends = {
            s.attributes["messaging.message.id"]: (s.trace_id, s.span_id)
            for s in spans if s.name == "send default"
        }  # fmt: skip
        assert set(sends) == {str(i) for i in got["ids"].values()}
        for s in spans:
            if s.name != "process default":
                continue
            job_id = s.attributes["messaging.message.id"]
            # Ids: the attempt row stores exactly the span's ids; the link is the send span.
            stored = scalar(db_url, "SELECT trace_id || '/' || span_id FROM tracedjobs_attempts "
                                    "WHERE job_id = %s AND attempt = %s",
                            (int(job_id), s.attributes["tracedjobs.job.attempt"]))  # fmt: skip
            assert stored == f"{s.trace_id}/{s.span_id}"
            assert [(li.trace_id, li.span_id) for li in s.links] == [sends[job_id]]
        (inner,) = [s for s in spans if s.name == "inner work"]
        (traced,) = [
            s for s in spans if s.name == "process default"
            and s.attributes["tracedjobs.task.name"] == "traced"
        ]  # fmt: skip
        assert (inner.trace_id, inner.parent_span_id) == (traced.trace_id, traced.span_id)
        shapes[mode] = sorted(map(repr, (shape(s, sends) for s in spans)))
    assert len(shapes["process"]) == 6  # 2 sends, 3 attempts (broken retries once), 1 inner
    assert shapes["process"] == shapes["thread"]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_defer_with_an_unreachable_collector_exits_within_the_bound(db_url: str, mode: str):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": unreachable_endpoint(),
        "TRACEDJOBS_OTEL_EXPORT": mode,
    }
    started = time.monotonic()
    result = run_cli(db_url, "defer", "--app", APP, "traced", "{}", **env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs") == 1
    assert "Traceback" not in result.stderr
    assert elapsed < EXIT_LIMIT, (elapsed, result.stderr)


def test_a_worker_with_an_unreachable_collector_stops_within_the_bound(db_url: str, tmp_path: Path):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": unreachable_endpoint(), "OTEL_BSP_SCHEDULE_DELAY": "100"}
    worker = WorkerProcess(db_url, APP, *WORKER_ARGS, log_path=tmp_path / "w.log", **env)
    try:
        worker.wait_for_output("started")
        (child,) = export_children(worker.pid)
        result = run_cli(db_url, "defer", "--app", APP, "traced", "{}")
        assert result.returncode == 0, result.stderr
        job = int(result.stdout)
        wait_until(
            lambda: scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (job,))
            == "succeeded", 30, "the job done",
        )  # fmt: skip
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.output()
        elapsed = time.monotonic() - started
        output = worker.output()
    finally:
        worker.stop()
    assert elapsed < EXIT_LIMIT, (elapsed, output)
    assert not alive(child)
    assert "stopped the telemetry exporter" in output


def test_the_export_process_ends_when_its_worker_is_killed(db_url: str, tmp_path: Path):
    receiver = OtlpReceiver()
    worker = WorkerProcess(db_url, APP, *WORKER_ARGS, log_path=tmp_path / "w.log", **receiver.env())
    try:
        worker.wait_for_output("started")
        (child,) = export_children(worker.pid)
        worker.signal(signal.SIGKILL)
        worker.wait(30)
        # stdin closed: the child flushes (bounded by its own grace) and exits, no orphan.
        wait_until(lambda: not alive(child), 30, "the export process to exit")
    finally:
        worker.stop()
        receiver.close()


def test_a_stalled_export_process_drops_spans_and_never_blocks_the_caller(
    receiver: OtlpReceiver,
):
    """Real child process, SIGSTOPped: ending spans must not block, the overflow is counted,
    and after SIGCONT every span that was not counted as dropped reaches the receiver."""
    script = r"""
import os, signal, sys, time
from opentelemetry.sdk.trace import TracerProvider
from tracedjobs import otel_export

child = otel_export.ExportChild(spans=True, metrics=False)
os.kill(child.pid, signal.SIGSTOP)
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(otel_export.ChildSpanProcessor(child))
tracer = provider.get_tracer("t")
N = 30000
for i in range(N):
    with tracer.start_as_current_span("s", attributes={"i": i, "pad": "x" * 200}):
        pass
dropped = child.dropped
os.kill(child.pid, signal.SIGCONT)
child.close(time.monotonic() + 30)
print(N, dropped)
"""
    env = cli_env("", **receiver.env(OTEL_BSP_SCHEDULE_DELAY="100"))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    total, dropped = map(int, result.stdout.split())
    assert dropped > 0, "the stalled child should have made the queue overflow"
    assert "records dropped (export queue full)" in result.stderr
    received = len(receiver.spans_named("s"))
    assert received == total - dropped, (received, total, dropped)


def test_force_flush_returns_once_the_export_process_has_exported(receiver: OtlpReceiver):
    """``force_flush`` means exported (the SDK's promise), not only handed to the child: with
    the child's batch delay at ten minutes, the span and the metric are at the receiver as
    soon as it returns, before the process exits."""
    script = r"""
import sys, time
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from tracedjobs import otel_export

child = otel_export.ExportChild(spans=True, metrics=True)
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(otel_export.ChildSpanProcessor(child))
reader = PeriodicExportingMetricReader(
    otel_export.ChildMetricExporter(child), export_interval_millis=600_000
)
meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
with provider.get_tracer("t").start_as_current_span("flushed"):
    meters.get_meter("t").create_counter("flushed.count").add(1)
print(provider.force_flush(20_000), meters.force_flush(20_000), flush=True)
sys.stdin.readline()  # the test looks at the receiver meanwhile
child.close(time.monotonic() + 5)
"""
    env = cli_env("", **receiver.env(OTEL_BSP_SCHEDULE_DELAY="600000"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().split() == ["True", "True"], proc.stderr
        assert len(receiver.spans_named("flushed")) == 1
        assert receiver.points_named("flushed.count")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_a_forked_task_process_does_not_keep_the_export_process_alive():
    """The pipe's write end must not survive in a fork (multiprocessing's default on Linux):
    after the parent closes, the export child sees EOF and exits although the fork lives."""
    script = r"""
import os, sys, time
from tracedjobs import otel_export

child = otel_export.ExportChild(spans=True, metrics=False)
pid = os.fork()
if pid == 0:
    os.close(1), os.close(2)  # not holding the test's output pipes open
    time.sleep(60)
    os._exit(0)
child.close(time.monotonic() + 30)
print(child.pid, pid, child._proc.returncode)
"""
    env = cli_env("", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
        cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    export_pid, fork_pid, returncode = map(int, result.stdout.split())
    try:
        assert result.returncode == 0, result.stderr
        # Exited by itself on EOF (0), not terminated at the deadline (-15).
        assert returncode == 0, result.stderr
        assert "stopped the telemetry exporter" not in result.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(fork_pid, signal.SIGKILL)
    assert not alive(export_pid)
