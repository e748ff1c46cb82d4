"""Every query of both dashboards returns data from real processes' metrics, and the overview
shows the same numbers as `tracedjobs top`.

A `tracedjobs worker --metrics-port P` runs jobs (succeeding, failing, retried) on two
queues, a producer process defers some more, and a real Prometheus (the `prometheus`
binary, as installed by .ci/run) scrapes both every second and evaluates the recording
rules of dashboards/alerts.yaml; each panel's PromQL and each variable is then evaluated
through Prometheus' HTTP API.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

import tracedjobs
from tests.conftest import with_dbname
from tests.helpers import ROOT, WorkerProcess, cli_env, run_cli, scalar, wait_until
from tests.prometheus import RULES, Prometheus, free_port, needs_prometheus, reachable

DASHBOARDS = {
    "overview": ROOT / "dashboards" / "tracedjobs.json",
    "task": ROOT / "dashboards" / "tracedjobs-task.json",
}
# Returns data only while an alert fires: the incident tests check it (tests/incidents).
ONLY_DURING_INCIDENTS = {"Firing alerts"}
APP = "tests.apps.incidents:app"

pytestmark = [pytest.mark.slow, needs_prometheus]


def _dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads(DASHBOARDS[name].read_text()))


def _targets() -> list[tuple[str, str]]:
    found = []
    for name in DASHBOARDS:
        for panel in _dashboard(name)["panels"]:
            if panel["title"] in ONLY_DURING_INCIDENTS:
                continue
            for target in panel.get("targets", []):
                found.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def _variables() -> list[tuple[str, str, str]]:
    return [
        (name, v["name"], v["definition"])
        for name in DASHBOARDS
        for v in _dashboard(name)["templating"]["list"]
        if v["type"] == "query"
    ]


@dataclass
class Stack:
    prometheus: Prometheus
    db_url: str
    app: tracedjobs.App
    worker: WorkerProcess


def _all_finished(db_url: str) -> bool:
    return not scalar(
        db_url,
        "SELECT count(*) FROM tracedjobs_jobs WHERE status IN ('todo', 'doing', 'aborting')",
    )


def _defer_round(app: tracedjobs.App) -> int:
    """Jobs that succeed, fail, and fail then succeed; returns how many attempts they make."""
    for _ in range(3):
        app.configure_task("work").defer(sleep=0.01)
    app.configure_task("poison").defer()  # retried, retried, failed
    app.configure_task("flaky").defer()  # retried, succeeded
    app.configure_task("work", queue="other").defer()
    return 3 + 3 + 2 + 1


@pytest.fixture(scope="module")
def stack(
    server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Prometheus holding two rounds of a real worker's and a real producer's metrics."""
    tmp = tmp_path_factory.mktemp("dashboards")
    name = f"tj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    db_url = with_dbname(server_url, name)
    worker_port, producer_port = free_port(), free_port()
    prom = Prometheus(
        tmp / "prometheus",
        {
            "tracedjobs-worker": [f"127.0.0.1:{worker_port}"],
            "tracedjobs-producer": [f"127.0.0.1:{producer_port}"],
        },
        rules=RULES.read_text(),
    )
    worker = WorkerProcess(
        db_url, APP, "-c", "4",
        "--metrics-port", str(worker_port),
        "--heartbeat-interval", "0.5",
        "--stalled-timeout", "2",
        "--polling-interval", "0.5",
        log_path=tmp / "worker.log",
    )  # fmt: skip
    producer = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.incidents", "--metrics-port", str(producer_port),
         "--task", "work", "--queue", "other", "--rate", "2", "--count", "8"],
        env=cli_env(db_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    # Deferring only needs the task names; the worker runs them from tests.apps.incidents.
    app = tracedjobs.App(database_url=db_url)
    for task in ("work", "poison", "flaky"):
        app.task(name=task)(lambda **_: None)
    try:
        prom.wait_ready()
        wait_until(lambda: reachable(f"http://127.0.0.1:{worker_port}/metrics"), 30, "/metrics")
        wait_until(lambda: prom.query("up == 1"), 30, "a first successful scrape")
        attempts = 0
        for round_ in ("first", "second"):
            attempts += _defer_round(app)
            wait_until(lambda: _all_finished(db_url), 60, f"{round_} round of jobs finished")
            scraped = f"sum(messaging_client_consumed_messages_total) >= {attempts}"
            wait_until(
                lambda expr=scraped: prom.query(expr),  # type: ignore[misc]
                30,
                f"Prometheus to scrape {attempts} finished attempts",
            )
        wait_until(
            lambda: prom.query("sum(messaging_client_sent_messages_total) >= 8"), 30, "sent jobs"
        )
        wait_until(lambda: _all_finished(db_url), 60, "the producer's jobs finished")
        # A few more evaluations, so that the gauges and the recording rules are in too.
        later = time.time() + 3
        wait_until(lambda: prom.query(f"timestamp(up) > {later}"), 30, "three more scrapes")
        yield Stack(prom, db_url, app, worker)
    finally:
        app.close()
        producer.send_signal(signal.SIGTERM)
        try:
            producer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            producer.kill()
        prom.stop()
        worker.stop()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _as_instant_query(expr: str) -> str:
    """Grafana variables replaced as Grafana would with "All" selected."""
    expr = expr.replace("$__rate_interval", "1m")
    for variable in ("service", "queue", "task"):
        expr = expr.replace(f"${variable}", ".*")
    return expr


@pytest.mark.parametrize(("panel", "expr"), _targets(), ids=[t[0] for t in _targets()])
def test_dashboard_query_returns_data(stack: Stack, panel: str, expr: str) -> None:
    query = _as_instant_query(expr)
    assert "$" not in query, f"unreplaced Grafana variable in {panel}: {query}"
    result = stack.prometheus.query(query)
    assert result, f"{panel}: no data for {query}"
    values = [float(r["value"][1]) for r in result]
    assert any(not math.isnan(v) for v in values), f"{panel}: only NaN for {query}: {result}"


@pytest.mark.parametrize(
    ("dashboard", "name", "definition"),
    _variables(),
    ids=[f"{v[0]}: {v[1]}" for v in _variables()],
)
def test_dashboard_variable_lists_values(
    stack: Stack, dashboard: str, name: str, definition: str
) -> None:
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", _as_instant_query(definition))
    assert match, f"variable {name}: unexpected definition {definition}"
    selector, label = match.groups()
    values = stack.prometheus.label_values(label, selector)
    expected = {
        "service": {"tracedjobs-worker"},
        "queue": {"default", "other"},
        "task": {"work", "poison", "flaky"},
    }[name]
    assert expected <= set(values), f"variable {name}: {values}"


def test_direct_metrics_endpoint_gives_prometheus_no_exemplars(stack: Stack) -> None:
    """What the README says: exemplars take the OTLP path; `--metrics-port` has none."""
    now = time.time()
    found = stack.prometheus.exemplars("messaging_process_duration_seconds_bucket", now - 600, now)
    assert found == []


# -- the same numbers in `tracedjobs top` and on the dashboard --------------------------------


def _panel_targets(title: str) -> dict[str, str]:
    (panel,) = [p for p in _dashboard("overview")["panels"] if p["title"] == title]
    return {t["legendFormat"]: _as_instant_query(t["expr"]) for t in panel["targets"]}


def _by_queue(prometheus: Prometheus, expr: str, at: float) -> dict[str, float]:
    return {
        r["metric"]["messaging_destination_name"]: float(r["value"][1])
        for r in prometheus.query(expr, at)
    }


def test_top_and_the_queues_panel_show_the_same_numbers(stack: Stack) -> None:
    """At one instant, per queue: todo (ready + scheduled), running, failed; attempts that
    succeeded and that failed, were retried or lost in the last minute; workers alive and
    stale. (Wait percentiles differ by design: top computes them from the attempts, Prometheus
    interpolates buckets.)"""
    queue = "compare"
    for _ in range(4):
        stack.app.configure_task("work", queue=queue).defer(sleep=0.01)
    stack.app.configure_task("poison", queue=queue).defer()  # 2 retried + 1 failed attempt
    stack.app.configure_task("flaky", queue=queue).defer()  # 1 retried + 1 succeeded attempt
    stack.app.configure_task("work", queue=queue, schedule_in={"hours": 1}).defer()  # scheduled
    running = stack.app.configure_task("work", queue=queue).defer(sleep=120)

    def settled() -> bool:
        status = scalar(
            stack.db_url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (running,)
        )
        finished = scalar(
            stack.db_url,
            "SELECT count(*) FROM tracedjobs_jobs WHERE queue_name = %s "
            "AND status IN ('succeeded', 'failed')",
            (queue,),
        )
        return status == "doing" and finished == 6

    wait_until(settled, 60, "the compare queue's jobs to settle")

    def gauge(status: str) -> str:
        return (
            "tracedjobs:queue_jobs:max"
            f'{{messaging_destination_name="{queue}", tracedjobs_job_status="{status}"}}'
        )

    wait_until(
        lambda: (
            stack.prometheus.query(f"{gauge('failed')} == 1")
            and stack.prometheus.query(f"{gauge('doing')} == 1")
            and stack.prometheus.query(
                f'sum(messaging_client_consumed_messages_total{{messaging_destination_name="{queue}"}})'
                " >= 9"
            )
        ),
        30,
        "Prometheus to see the settled queue",
    )

    result = run_cli(stack.db_url, "top", "--json", "--seconds", "2")
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)
    at = datetime.datetime.fromisoformat(top["at"]).timestamp()
    (row,) = [q for q in top["queues"] if q["name"] == queue]

    columns = _panel_targets("Queues (as in tracedjobs top)")
    dashboard = {
        name: _by_queue(stack.prometheus, expr, at).get(queue) for name, expr in columns.items()
    }
    from_top = {
        "todo": row["ready"] + row["scheduled"],
        "running": row["running"],
        "failed": row["failed"],
        "done/1m": row["done_1m"],
        "failed/1m": row["failed_1m"],
    }
    assert from_top == {"todo": 1, "running": 1, "failed": 1, "done/1m": 5, "failed/1m": 4}
    assert {k: dashboard[k] for k in from_top} == from_top
    assert dashboard["oldest ready"] == 0 and row["oldest_ready_age"] is None  # none ready

    workers = {
        r["metric"]["state"]: float(r["value"][1])
        for r in stack.prometheus.query(_panel_targets("Workers alive / stale")["{{state}}"], at)
    }
    assert workers == {
        "alive": top["summary"]["workers_alive"],
        "stale": top["summary"]["workers_stale"],
    }
    assert workers["alive"] == 1
