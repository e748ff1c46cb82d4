"""Exemplars: which path carries them from a real worker, and which does not.

A `tracedjobs worker` exports over OTLP to a real receiver (tests/otlp_receiver.py) and also
serves `--metrics-port`. Over OTLP, the points of both histograms carry exemplars whose trace
ids are those of the attempts (as recorded in tracedjobs_attempts); the Prometheus endpoint
has none, even when asked for OpenMetrics (the OpenTelemetry Prometheus exporter does not
write them). The collector path (otel-collector.yaml) turns OTLP exemplars into OpenMetrics
exemplars for Prometheus; that part is configuration, checked in tests/unit.
"""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess, query, run_cli, scalar, wait_until
from tests.otlp_receiver import OtlpReceiver
from tests.prometheus import free_port

pytestmark = pytest.mark.slow

APP = "tests.apps.incidents:app"
HISTOGRAMS = ("messaging.process.duration", "tracedjobs.job.queue_wait")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def test_histogram_points_over_otlp_carry_the_attempts_trace_ids_and_the_scrape_endpoint_none(
    db_url: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    port = free_port()
    worker = WorkerProcess(
        db_url, APP, "--metrics-port", str(port), "--heartbeat-interval", "0.5",
        "--stalled-timeout", "2", "--polling-interval", "0.5",
        log_path=tmp_path / "worker.log", **receiver.env(),
    )  # fmt: skip
    try:
        worker.wait_for_output("started")
        # Durations in different buckets, so one collection keeps several exemplars.
        for sleep in (0.0, 0.02, 0.2, 0.6):
            result = run_cli(db_url, "defer", "--app", APP, "work", f'{{"sleep": {sleep}}}')
            assert result.returncode == 0, result.stderr
        result = run_cli(db_url, "defer", "--app", APP, "poison", "{}")
        assert result.returncode == 0, result.stderr
        wait_until(
            lambda: (
                scalar(
                    db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status IN ('todo', 'doing')"
                )
                == 0
            ),
            30,
            "the jobs to finish",
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            content_type = response.headers["Content-Type"]
            scrape = response.read().decode()
    finally:
        worker.signal(signal.SIGTERM)  # flushes the last metrics
        worker.wait(30)
        worker.stop()

    attempts = {
        trace_id for (trace_id,) in query(db_url, "SELECT trace_id FROM tracedjobs_attempts")
    }
    assert len(attempts) == 7 and None not in attempts  # 4 work + 3 poison attempts
    for name in HISTOGRAMS:
        exemplar_traces = {t for p in receiver.points_named(name) for t in p.exemplar_trace_ids}
        assert exemplar_traces, f"{name}: no exemplar"
        assert exemplar_traces <= attempts, f"{name}: exemplars of unknown traces"
        # One exemplar per bucket and export: several different attempts show up.
        assert len(exemplar_traces) >= 3, f"{name}: {exemplar_traces}"

    # The direct endpoint: OpenMetrics when asked, with histogram buckets but no exemplar
    # (an exemplar would follow a bucket line as `# {trace_id="…"} value`).
    assert content_type.startswith("application/openmetrics-text"), content_type
    buckets = [line for line in scrape.splitlines() if "_bucket{" in line]
    assert any(line.startswith("messaging_process_duration_seconds_bucket") for line in buckets)
    assert not [line for line in buckets if " # {" in line]
