"""`tracedjobs worker --metrics-port`: the Prometheus names we document, the database-wide
gauges exported by exactly one worker, and lost attempts counted by the rescuer."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess, run_cli, scalar, wait_until

pytestmark = pytest.mark.slow

APP = "tests.apps.otel:app"
WORKER_ARGS = ("--heartbeat-interval", "0.5", "--stalled-timeout", "2", "--polling-interval", "0.5")

# Every metric family as scraped, as listed in docs/observability.md.
FAMILIES = (
    "messaging_client_sent_messages_total",
    "messaging_client_consumed_messages_total",
    "messaging_process_duration_seconds_bucket",
    "messaging_process_duration_seconds_sum",
    "messaging_process_duration_seconds_count",
    "tracedjobs_job_queue_wait_seconds_bucket",
    "tracedjobs_workers",
    "tracedjobs_worker_heartbeat_age_seconds",
    "tracedjobs_queue_jobs",
    "tracedjobs_queue_oldest_age_seconds",
)
GAUGES = ("tracedjobs_workers{", "tracedjobs_queue_jobs{", "tracedjobs_queue_oldest_age_seconds{",
          "tracedjobs_worker_heartbeat_age_seconds{")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def samples(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def worker(db_url: str, tmp_path: Path, name: str, port: int, *args: str) -> WorkerProcess:
    w = WorkerProcess(
        db_url, APP, *WORKER_ARGS, "--metrics-port", str(port), "--name", name, *args,
        log_path=tmp_path / f"{name}.log",
    )  # fmt: skip
    w.wait_for_output("started")
    return w


def defer(db_url: str, task: str, *args: str) -> int:
    result = run_cli(db_url, "defer", "--app", APP, task, *args)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_a_scrape_contains_every_metric_family_under_its_documented_name(
    db_url: str, tmp_path: Path
):
    port = free_port()
    w = worker(db_url, tmp_path, "w1", port)
    try:
        job_id = defer(db_url, "traced")
        wait_until(lambda: scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s",
                                  (job_id,)) == "succeeded", 30, "the job")  # fmt: skip
        # A task deferring another: the worker process counts a sent message too.
        defer(db_url, "fan_out")
        text = wait_until(
            lambda: (t := scrape(port)) and all(samples(t, f) for f in FAMILIES) and t,
            30,
            "every family in the scrape",
        )
    finally:
        w.stop()
    missing = [f for f in FAMILIES if not samples(text, f)]
    assert missing == []
    assert "# TYPE messaging_client_consumed_messages_total counter" in text
    assert "# TYPE messaging_process_duration_seconds histogram" in text
    assert "# TYPE tracedjobs_queue_jobs gauge" in text
    (line,) = [s for s in samples(text, "messaging_process_duration_seconds_bucket")
               if 'le="0.005"' in s and 'tracedjobs_task_name="traced"' in s]  # fmt: skip
    assert 'messaging_destination_name="default"' in line
    assert 'tracedjobs_job_outcome="succeeded"' in line
    assert any('state="alive"' in s for s in samples(text, "tracedjobs_workers{"))
    queue_jobs = samples(text, "tracedjobs_queue_jobs{")
    assert any('tracedjobs_job_status="succeeded"' in s for s in queue_jobs)
    # Resource attributes are on target_info only.
    assert 'service_name="tracedjobs-worker"' in "\n".join(samples(text, "target_info"))


def test_with_two_workers_the_database_gauges_are_exported_once_and_handed_over(
    db_url: str, tmp_path: Path
):
    defer(db_url, "traced", "--in", "1h")  # a queue to report on
    ports = [free_port(), free_port()]
    workers = [worker(db_url, tmp_path, f"w{i}", port) for i, port in enumerate(ports)]
    try:
        def exporters() -> list[int]:
            texts = [scrape(p) for p in ports]
            return [i for i, t in enumerate(texts) if all(samples(t, g) for g in GAUGES)]

        (leader,) = wait_until(lambda: (e := exporters()) and e, 30, "an elected exporter")
        # Stays exactly one over several refreshes.
        for _ in range(5):
            time.sleep(0.5)
            assert exporters() == [leader]
        assert exporters() == [leader]
        text = scrape(ports[leader])
        (alive,) = [s for s in samples(text, "tracedjobs_workers{") if 'state="alive"' in s]
        assert alive.endswith(" 2.0")
        (todo,) = [s for s in samples(text, "tracedjobs_queue_jobs{") if '"todo"' in s]
        assert todo.endswith(" 1.0")

        workers[leader].signal(signal.SIGKILL)
        workers[leader].wait(10)
        other = 1 - leader
        wait_until(lambda: exporters() == [other], 30, "the other worker to take over")
    finally:
        for w in workers:
            w.stop()


def test_a_sigkilled_workers_lost_attempt_is_counted_by_the_rescuer(db_url: str, tmp_path: Path):
    rescuer_port = free_port()
    rescuer = worker(db_url, tmp_path, "rescuer", rescuer_port, "-q", "other")
    victim = worker(db_url, tmp_path, "victim", free_port(), "-q", "default")
    try:
        job_id = defer(db_url, "slow")
        wait_until(lambda: scalar(db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s",
                                  (job_id,)) == "doing", 30, "the slow job to start")  # fmt: skip
        victim.signal(signal.SIGKILL)
        victim.wait(10)

        def lost_lines() -> list[str]:
            return [
                s for s in samples(scrape(rescuer_port), "messaging_client_consumed_messages_total")
                if 'tracedjobs_job_outcome="lost"' in s and 'tracedjobs_task_name="slow"' in s
            ]

        (line,) = wait_until(lost_lines, 30, "the lost attempt in the rescuer's metrics")
    finally:
        rescuer.stop()
        victim.stop()
    assert line.endswith(" 1.0")
    assert 'error_type="WorkerLost"' in line
    assert scalar(db_url, "SELECT outcome FROM tracedjobs_attempts WHERE job_id = %s ORDER BY id "
                          "LIMIT 1", (job_id,)) == "lost"  # fmt: skip
