"""Every query of dashboards/tracedjobs.json returns data from a real worker's metrics.

A `tracedjobs worker --metrics-port P` runs jobs (succeeding and failing) while a real
Prometheus (the `prometheus` binary, as installed by .ci/run) scrapes it every second; each
panel's PromQL is then evaluated through Prometheus's HTTP API.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tracedjobs
from tests.conftest import with_dbname
from tests.helpers import ROOT, WorkerProcess, scalar, wait_until

DASHBOARD = ROOT / "dashboards" / "tracedjobs.json"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs the prometheus binary (apt-get install prometheus; .ci/run installs it)",
    ),
]


def _targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"{panel['title']} [{target['refId']}]", target["expr"]))
    return found


def _variables() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (v["name"], v["definition"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _reachable(url: str) -> bool:
    try:
        _get(url, timeout=2)
        return True
    except OSError:
        return False


class Prometheus:
    """A real Prometheus scraping one target every second, with a throw-away TSDB."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: tracedjobs-worker\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self._log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(_get(url))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        url = f"{self.url}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
            {"match[]": match}
        )
        return list(json.loads(_get(url))["data"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _all_finished(db_url: str) -> bool:
    return not scalar(
        db_url,
        "SELECT count(*) FROM tracedjobs_jobs WHERE status IN ('todo', 'doing', 'aborting')",
    )


def _defer_round(app: tracedjobs.App, label: str) -> int:
    """Jobs that succeed and fail on two queues; returns how many attempts they make."""
    for i in range(3):
        app.configure_task("record").defer(label=f"{label}-{i}")
    app.configure_task("fail").defer(message="expected failure")
    app.configure_task("fail").defer(message="expected failure")
    app.configure_task("noop", queue="other").defer()
    return 6


@pytest.fixture(scope="module")
def prometheus(
    server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Prometheus holding two rounds of a real worker's metrics (every rate() sees an increase)."""
    tmp = tmp_path_factory.mktemp("dashboards")
    name = f"tj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    db_url = with_dbname(server_url, name)
    metrics_port = _free_port()
    worker = WorkerProcess(
        db_url,
        "tests.apps.basic:app",
        "--metrics-port", str(metrics_port),
        "--heartbeat-interval", "0.5",
        "--stalled-timeout", "2",
        "--polling-interval", "0.5",
        log_path=tmp / "worker.log",
    )  # fmt: skip
    prom = Prometheus(tmp, f"127.0.0.1:{metrics_port}")
    # Deferring only needs the task names; the worker runs them from tests.apps.basic.
    app = tracedjobs.App(database_url=db_url)
    for task in ("record", "fail", "noop"):
        app.task(name=task)(lambda **_: None)
    try:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: _reachable(metrics_url), 30, "worker /metrics")
        wait_until(lambda: _reachable(f"{prom.url}/-/ready"), 30, "Prometheus ready")
        wait_until(lambda: prom.query('up == 1'), 30, "a first successful scrape")

        attempts = 0
        for round_ in ("first", "second"):
            attempts += _defer_round(app, round_)
            wait_until(lambda: _all_finished(db_url), 30, f"{round_} round of jobs finished")
            wait_until(
                lambda n=attempts: [
                    r for r in prom.query("sum(messaging_client_consumed_messages_total)")
                    if float(r["value"][1]) >= n
                ],
                30,
                f"Prometheus to scrape {attempts} finished attempts",
            )
        # A few more scrapes, so that the gauges (refreshed by the elected worker) are in too.
        later = time.time() + 3
        wait_until(lambda: prom.query(f"timestamp(up) > {later}"), 30, "three more scrapes")
        yield prom
    finally:
        app.close()
        prom.stop()
        worker.stop()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _as_instant_query(expr: str) -> str:
    """Grafana variables replaced as Grafana would with "All" selected."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$queue", ".*")
        .replace("$task", ".*")
    )


@pytest.mark.parametrize(("panel", "expr"), _targets(), ids=[t[0] for t in _targets()])
def test_dashboard_query_returns_data(prometheus: Prometheus, panel: str, expr: str) -> None:
    query = _as_instant_query(expr)
    assert "$" not in query, f"unreplaced Grafana variable in {panel}: {query}"
    result = prometheus.query(query)
    assert result, f"{panel}: no data for {query}"
    values = [float(r["value"][1]) for r in result]
    assert any(not math.isnan(v) for v in values), f"{panel}: only NaN for {query}: {result}"


@pytest.mark.parametrize(("name", "definition"), _variables(), ids=[v[0] for v in _variables()])
def test_dashboard_variable_lists_values(
    prometheus: Prometheus, name: str, definition: str
) -> None:
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", _as_instant_query(definition))
    assert match, f"variable {name}: unexpected definition {definition}"
    selector, label = match.groups()
    values = prometheus.label_values(label, selector)
    expected = {"queue": {"default", "other"}, "task": {"record", "fail", "noop"}}[name]
    assert expected <= set(values), f"variable {name}: {values}"


def test_dashboard_histogram_panels_show_exemplars() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    histogram_targets = [
        t for p in dashboard["panels"] for t in p.get("targets", []) if "_bucket" in t["expr"]
    ]
    assert len(histogram_targets) == 6
    assert all(t["exemplar"] is True for t in histogram_targets)
