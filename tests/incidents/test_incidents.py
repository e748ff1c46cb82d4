"""The alerts of dashboards/alerts.yaml fire on real incidents, and only the right one does.

Each incident gets its own database, workers (`tracedjobs worker --metrics-port`, the elected
one exporting the database-wide gauges), producer processes and a real Prometheus (Debian's
binary) that scrapes them every second and evaluates a time-compressed copy of the shipped
rules: every duration divided by ``FACTOR`` and per-second thresholds multiplied by it (see
``tests.prometheus.time_compressed_rules``), so a 10-minute `for:` takes 20 s. Then the
incident is caused for real — SIGKILL, a poison task, a 50× slower task, producers that
outrun the workers, a stopped PostgreSQL server — and Prometheus' /api/v1/alerts is watched:
the expected alert must reach `firing` within its window, and no other alert may fire.

The five incidents run concurrently (each in a thread, with its own processes and ports), so
the whole module takes about two minutes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import with_dbname
from tests.helpers import ROOT, WorkerProcess, cli_env, query, run_cli, scalar, wait_until
from tests.prometheus import RULES, Prometheus, free_port, needs_prometheus, time_compressed_rules

pytestmark = [pytest.mark.incidents, pytest.mark.slow, needs_prometheus, pytest.mark.timeout(400)]

FACTOR = 30  # time runs 30× faster in the test copy of the rules
APP = "tests.apps.incidents:app"
WORKER_ARGS = ("--heartbeat-interval", "1", "--stalled-timeout", "3", "--polling-interval", "1")
ALL_ALERTS = {
    rule["alert"]
    for group in yaml.safe_load(RULES.read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
}
DASHBOARD = ROOT / "dashboards" / "tracedjobs.json"


@dataclass
class Observation:
    """What Prometheus said during one incident (times in seconds after the trigger)."""

    expected: str
    trigger: float | None = None
    first_firing: dict[str, float] = field(default_factory=dict)  # monotonic times
    panel: list[str] = field(default_factory=list)  # alert names the dashboard panel listed
    details: dict[str, Any] = field(default_factory=dict)

    def fired_after(self, name: str) -> float | None:
        at = self.first_firing.get(name)
        return None if at is None or self.trigger is None else at - self.trigger

    def others(self, allowed: frozenset[str] = frozenset()) -> dict[str, float | None]:
        return {
            name: self.fired_after(name)
            for name in self.first_firing
            if name != self.expected and name not in allowed
        }


class Rig:
    """One incident's database, processes and Prometheus."""

    def __init__(self, name: str, tmp: Path, db_url: str) -> None:
        self.name = name
        self.tmp = tmp
        self.db_url = db_url
        self.worker_ports: list[int] = []
        self.producer_ports: list[int] = []
        self.workers: list[WorkerProcess] = []
        self.producers: list[subprocess.Popen[str]] = []
        self.prometheus: Prometheus | None = None
        self.observation: Observation | None = None

    # -- processes ----------------------------------------------------------------------

    def ports(self, workers: int, producers: int = 0) -> None:
        self.worker_ports = [free_port() for _ in range(workers)]
        self.producer_ports = [free_port() for _ in range(producers)]

    def start_prometheus(self) -> Prometheus:
        targets = {"tracedjobs-worker": [f"127.0.0.1:{p}" for p in self.worker_ports]}
        if self.producer_ports:
            targets["tracedjobs-producer"] = [f"127.0.0.1:{p}" for p in self.producer_ports]
        self.prometheus = Prometheus(
            self.tmp / "prometheus", targets, rules=time_compressed_rules(RULES.read_text(), FACTOR)
        )
        self.prometheus.wait_ready()
        return self.prometheus

    def start_worker(self, index: int, concurrency: int) -> WorkerProcess:
        worker = WorkerProcess(
            self.db_url, APP, "-c", str(concurrency), "--name", f"{self.name}-w{index}",
            "--metrics-port", str(self.worker_ports[index]), *WORKER_ARGS,
            log_path=self.tmp / f"worker{index}.log",
        )  # fmt: skip
        self.workers.append(worker)
        worker.wait_for_output("started")
        return worker

    def start_producer(
        self, index: int, task: str, rate: float, *, args: dict[str, Any] | None = None
    ) -> Path:
        """A producer process deferring ``rate`` jobs/s; returns its (rewritable) args file."""
        args_file = self.tmp / f"producer{index}.json"
        args_file.write_text(json.dumps(args or {}))
        log = open(self.tmp / f"producer{index}.log", "w")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tests.apps.incidents",
                "--metrics-port", str(self.producer_ports[index]), "--task", task,
                "--rate", str(rate), "--args-file", str(args_file),
            ],
            env=cli_env(self.db_url), stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )  # fmt: skip
        log.close()
        self.producers.append(proc)
        return args_file

    def stop_producers(self) -> None:
        for proc in self.producers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.producers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def defer(self, task: str, count: int = 1, **kwargs: Any) -> None:
        result = run_cli(self.db_url, "defer", "--app", APP, task, json.dumps(kwargs))
        assert result.returncode == 0, result.stderr
        for _ in range(count - 1):
            assert (
                run_cli(self.db_url, "defer", "--app", APP, task, json.dumps(kwargs)).returncode
                == 0
            )

    def close(self) -> None:
        self.stop_producers()
        for worker in self.workers:
            worker.stop()
        if self.prometheus is not None:
            self.prometheus.stop()

    # -- watching -----------------------------------------------------------------------

    def wait_for(self, expr: str, what: str, timeout: float = 60) -> None:
        assert self.prometheus is not None
        prometheus = self.prometheus
        wait_until(lambda: prometheus.query(expr), timeout, f"{self.name}: {what} ({expr})")

    def watch(self, seconds: float, *, stop_on: str | None = None, grace: float = 3.0) -> None:
        """Record every alert that fires for ``seconds`` (or until ``stop_on`` fired + grace)."""
        assert self.prometheus is not None and self.observation is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = time.monotonic()
            for name in self.prometheus.firing():
                self.observation.first_firing.setdefault(name, now)
            if stop_on in self.observation.first_firing:
                deadline = min(deadline, self.observation.first_firing[stop_on] + grace)
            time.sleep(0.5)

    def incident(self, window: float) -> None:
        """The incident happened now: watch until the expected alert fires (at most
        ``window`` seconds), then check the dashboard's alert panel."""
        assert self.observation is not None
        self.observation.trigger = time.monotonic()
        self.watch(window, stop_on=self.observation.expected)
        self.check_panel()

    def check_panel(self) -> None:
        """The overview dashboard's "Firing alerts" panel lists what Prometheus fires."""
        assert self.prometheus is not None and self.observation is not None
        (panel,) = [p for p in json.loads(DASHBOARD.read_text())["panels"]
                    if p["title"] == "Firing alerts"]  # fmt: skip
        (target,) = panel["targets"]
        self.observation.panel = sorted(
            r["metric"]["alertname"] for r in self.prometheus.query(target["expr"])
        )


# -- the incidents ------------------------------------------------------------------------


def worker_killed(rig: Rig) -> None:
    """(a) The only worker is SIGKILLed while jobs wait → TracedjobsNoAliveWorker."""
    rig.observation = Observation("TracedjobsNoAliveWorker")
    rig.ports(workers=1)
    rig.start_prometheus()
    worker = rig.start_worker(0, concurrency=1)
    rig.defer("work", 3, sleep=0)
    rig.wait_for("sum(messaging_client_consumed_messages_total) >= 3", "three attempts scraped")
    rig.defer("work", 4, sleep=120)  # one runs, three wait
    rig.wait_for('tracedjobs:queue_oldest_age_seconds:max{messaging_destination_name="default"} > 0',
                 "ready jobs waiting")  # fmt: skip
    rig.watch(1)
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    rig.incident(40)


def poison_task(rig: Rig) -> None:
    """(b) A poison task fails every attempt → TracedjobsFailureRatioHigh."""
    rig.observation = Observation("TracedjobsFailureRatioHigh")
    rig.ports(workers=1, producers=2)
    rig.start_prometheus()
    rig.start_worker(0, concurrency=4)
    rig.start_producer(0, "work", 2, args={"sleep": 0.05})
    rig.wait_for('tracedjobs:attempts:rate5m{tracedjobs_task_name="work"} > 0', "healthy traffic")
    rig.watch(3)
    rig.start_producer(1, "poison", 1)
    rig.incident(60)


def task_slowdown(rig: Rig) -> None:
    """(c) A task becomes 50× slower (no backlog) → TracedjobsTaskSlowerThanUsual."""
    rig.observation = Observation("TracedjobsTaskSlowerThanUsual")
    rig.ports(workers=1, producers=1)
    rig.start_prometheus()
    rig.start_worker(0, concurrency=4)
    args_file = rig.start_producer(0, "work", 2, args={"sleep": 0.02})
    rig.wait_for('tracedjobs:process_duration_seconds:p95_rate5m{tracedjobs_task_name="work"}',
                 "a first p95 of the task's duration")  # fmt: skip
    # The baseline: the rule compares with the median p95 over its (compressed) last day.
    rig.watch(40)
    args_file.write_text(json.dumps({"sleep": 1.0}))
    rig.incident(60)


def backlog_growing(rig: Rig) -> None:
    """(d) Producers outrun the workers → TracedjobsBacklogGrowing."""
    rig.observation = Observation("TracedjobsBacklogGrowing")
    rig.ports(workers=1, producers=1)
    rig.start_prometheus()
    rig.start_worker(0, concurrency=20)  # 20 slots × 0.5 s jobs: 40 jobs/s at most
    rig.wait_for("tracedjobs:workers:max", "the database-wide gauges")
    rig.watch(2)
    rig.start_producer(0, "work", 48, args={"sleep": 0.5})  # ~8 jobs/s more than that
    rig.incident(60)
    rig.stop_producers()


class EmbeddedServer:
    """A private PostgreSQL (the embedded server in its own TRACEDJOBS_HOME) to stop at will."""

    def __init__(self) -> None:
        # A short path: the server's Unix socket lives in the data directory.
        self.home = Path(tempfile.mkdtemp(prefix="tjinc"))
        self.env = {k: v for k, v in os.environ.items() if k != "TRACEDJOBS_DATABASE_URL"}
        self.env["TRACEDJOBS_HOME"] = str(self.home)

    def _db(self, command: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tracedjobs.cli", "db", command],
            env=self.env, capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, f"db {command}: {result.stderr}"
        return result.stdout.strip()

    def start(self) -> str:
        self._db("start")
        return self._db("url")

    def stop(self) -> None:
        self._db("stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def database_outage(rig: Rig, server: EmbeddedServer) -> None:
    """(e) PostgreSQL is stopped for 60 s → TracedjobsMetricsAbsent; afterwards no lost job."""
    rig.observation = Observation("TracedjobsMetricsAbsent")
    result = run_cli(rig.db_url, "migrate")
    assert result.returncode == 0, result.stderr
    rig.ports(workers=2)
    rig.start_prometheus()
    rig.start_worker(0, concurrency=1)  # one slot each: each worker runs one of the long jobs
    rig.start_worker(1, concurrency=1)
    rig.defer("work", 4, sleep=0.5)
    rig.wait_for("sum(messaging_client_consumed_messages_total) >= 4", "four attempts scraped")
    rig.wait_for("tracedjobs:workers:max{state='alive'} == 2", "two alive workers")
    # Jobs still running when the server stops: their results are written after it is back.
    rig.defer("work", 2, sleep=4)
    wait_until(
        lambda: scalar(rig.db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'doing'") == 2,
        30, "two running jobs",
    )  # fmt: skip
    rig.watch(1)
    server.stop()
    rig.observation.trigger = time.monotonic()
    rig.watch(60)  # the whole outage: only the expected alert may fire
    rig.observation.details["fired_during_outage"] = sorted(rig.observation.first_firing)
    rig.check_panel()
    server.start()
    rig.observation.details["restarted_after"] = time.monotonic() - rig.observation.trigger
    # Until the workers are back and both running jobs are finished, and then 10 s more
    # (TracedjobsLostJobs has no `for:`: a lost attempt would fire it within seconds).
    wait_until(
        lambda: scalar(rig.db_url, "SELECT count(*) FROM tracedjobs_jobs "
                                   "WHERE status IN ('todo', 'doing')") == 0,
        90, "the running jobs to finish after the outage",
    )  # fmt: skip
    rig.wait_for("tracedjobs:workers:max{state='alive'} == 2", "two alive workers again")
    rig.watch(10)
    rig.observation.details["lost_attempts"] = query(
        rig.db_url,
        "SELECT job_id, attempt, error_type FROM tracedjobs_attempts WHERE outcome = 'lost'",
    )
    rig.observation.details["job_statuses"] = query(
        rig.db_url, "SELECT id, status FROM tracedjobs_jobs ORDER BY id"
    )


SCENARIOS: dict[str, Callable[..., None]] = {
    "worker_killed": worker_killed,
    "poison_task": poison_task,
    "task_slowdown": task_slowdown,
    "backlog_growing": backlog_growing,
    "database_outage": database_outage,
}
# Which test needs which incident (so that `-k` runs only the incidents it selects).
TESTS = {
    "test_killed_worker_fires_no_alive_worker_only": "worker_killed",
    "test_poison_task_fires_failure_ratio_only": "poison_task",
    "test_fifty_times_slower_task_fires_slower_than_usual_only": "task_slowdown",
    "test_producers_outrunning_workers_fire_backlog_growing_only": "backlog_growing",
    "test_database_outage_fires_metrics_absent": "database_outage",
    "test_lost_jobs_alert_fires_after_the_outage_only_if_jobs_were_recorded_lost": (
        "database_outage"
    ),
    "test_database_outage_loses_no_job": "database_outage",
    "test_every_alert_is_covered_by_an_incident_or_a_unit_test": None,
}


def _run(name: str, server_url: str, template_db: str, tmp: Path) -> Rig:
    server: EmbeddedServer | None = None
    dbname = None
    if name == "database_outage":
        server = EmbeddedServer()
        db_url = server.start()
    else:
        dbname = f"tj_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {dbname} TEMPLATE {template_db}")
        db_url = with_dbname(server_url, dbname)
    rig = Rig(name, tmp / name, db_url)
    rig.tmp.mkdir(parents=True)
    try:
        if server is not None:
            SCENARIOS[name](rig, server)
        else:
            SCENARIOS[name](rig)
        return rig
    finally:
        rig.close()
        if server is not None:
            server.remove()
        if dbname is not None:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


@pytest.fixture(scope="module")
def incidents(
    request: pytest.FixtureRequest,
    server_url: str,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, concurrent.futures.Future[Rig]]]:
    """Starts every selected incident at once; each test waits for its own."""
    names = [getattr(item, "originalname", item.name) for item in request.session.items]
    wanted = {TESTS[name] for name in names if TESTS.get(name)}
    tmp = tmp_path_factory.mktemp("incidents")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {
            name: pool.submit(_run, name, server_url, template_db, tmp)
            for name in SCENARIOS
            if name in wanted
        }
        yield futures
        for future in futures.values():
            future.exception()  # wait for every incident to clean up


def _observed(incidents: dict[str, concurrent.futures.Future[Rig]], name: str) -> Observation:
    rig = incidents[name].result(timeout=360)
    assert rig.observation is not None
    return rig.observation


def _assert_only_expected_fired(obs: Observation, within: float) -> None:
    fired = obs.fired_after(obs.expected)
    print(f"{obs.expected} fired after {fired} s; others: {obs.others()}")
    assert fired is not None, f"{obs.expected} never fired; fired instead: {obs.others()}"
    assert fired <= within, f"{obs.expected} fired {fired:.1f} s after the incident (> {within} s)"
    assert obs.others() == {}, f"other alerts fired too: {obs.others()}"
    assert obs.expected in obs.panel, f"the dashboard's alert panel listed {obs.panel}"


def test_killed_worker_fires_no_alive_worker_only(incidents: dict[str, Any]) -> None:
    obs = _observed(incidents, "worker_killed")
    _assert_only_expected_fired(obs, within=40)


def test_poison_task_fires_failure_ratio_only(incidents: dict[str, Any]) -> None:
    obs = _observed(incidents, "poison_task")
    _assert_only_expected_fired(obs, within=60)


def test_fifty_times_slower_task_fires_slower_than_usual_only(incidents: dict[str, Any]) -> None:
    obs = _observed(incidents, "task_slowdown")
    _assert_only_expected_fired(obs, within=60)


def test_producers_outrunning_workers_fire_backlog_growing_only(
    incidents: dict[str, Any],
) -> None:
    obs = _observed(incidents, "backlog_growing")
    _assert_only_expected_fired(obs, within=60)


def test_database_outage_fires_metrics_absent(incidents: dict[str, Any]) -> None:
    obs = _observed(incidents, "database_outage")
    fired = obs.fired_after(obs.expected)
    print(f"{obs.expected} fired after {fired} s; others: {obs.others()}; {obs.details}")
    assert fired is not None and fired <= 40, (obs.expected, fired, obs.others())
    assert obs.details["fired_during_outage"] == [obs.expected], obs.details
    assert obs.expected in obs.panel, obs.panel
    # After the restart the workers' heartbeats are old until they reconnect: the stale-workers
    # alert may fire then (it names what happened), and the lost-jobs alert if jobs were
    # really recorded lost (see the next two tests); nothing else may.
    allowed = frozenset({"TracedjobsWorkersStale", "TracedjobsLostJobs"})
    assert obs.others(allowed) == {}, obs.others()


def test_lost_jobs_alert_fires_after_the_outage_only_if_jobs_were_recorded_lost(
    incidents: dict[str, Any],
) -> None:
    obs = _observed(incidents, "database_outage")
    lost = obs.details["lost_attempts"]
    assert ("TracedjobsLostJobs" in obs.first_firing) == bool(lost), (lost, obs.others())


def test_database_outage_loses_no_job(incidents: dict[str, Any]) -> None:
    obs = _observed(incidents, "database_outage")
    assert obs.details["lost_attempts"] == [], obs.details


def test_every_alert_is_covered_by_an_incident_or_a_unit_test() -> None:
    """Alerts without an incident here are exercised by dashboards/alerts_test.yaml."""
    by_incident = {
        "TracedjobsNoAliveWorker",
        "TracedjobsFailureRatioHigh",
        "TracedjobsTaskSlowerThanUsual",
        "TracedjobsBacklogGrowing",
        "TracedjobsMetricsAbsent",
    }  # fmt: skip
    unit_tested = set()
    for test in yaml.safe_load((ROOT / "dashboards" / "alerts_test.yaml").read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            if case["exp_alerts"]:
                unit_tested.add(case["alertname"])
    assert by_incident <= ALL_ALERTS
    assert unit_tested == ALL_ALERTS
