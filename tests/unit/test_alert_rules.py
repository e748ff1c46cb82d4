"""dashboards/alerts.yaml: valid, unit-tested (promtool), well-labelled, and its test copy.

`promtool check rules` and `promtool test rules dashboards/alerts_test.yaml` run here as in
.ci/run; a few mutations of the rules show that those unit tests can fail. The
incident tests (tests/incidents) run the rules on a real Prometheus.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus import RULES, time_compressed_rules, unannotated_thresholds

ROOT = Path(__file__).resolve().parents[2]
RULES_TEST = ROOT / "dashboards" / "alerts_test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool (apt-get install prometheus; .ci/run installs it)",
)
# Labels an alert may carry: bounded by the code and the deployment, never per job.
BOUNDED = {"job", "messaging_destination_name", "tracedjobs_task_name", "state", "severity",
           "tracedjobs_job_status", "le", "tracedjobs_job_outcome"}  # fmt: skip


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# Each guard of the rules, removed, breaks a unit test.
MUTATIONS = {
    "failure-ratio volume guard": (
        "> 0.01  # per second: at least 3 attempts in 5 minutes",
        "> 0  # per second",
    ),
    "no-alive-worker ignores workers that still export counters": (
        "          unless on () count(messaging_client_consumed_messages_total)\n",
        "",
    ),
    "metrics-absent defers to no-alive-worker": (
        "          unless on () count(tracedjobs:queue_waiting_without_workers)\n",
        "\n",
    ),
    "lost jobs: a series born in the window counts": (
        'unless\n                  messaging_client_consumed_messages_total{tracedjobs_job_outcome="lost"} offset 15m',
        'and\n                  messaging_client_consumed_messages_total{tracedjobs_job_outcome="lost"} offset 15m',
    ),
    "backlog floor": ('"todo"} > 100  # jobs', '"todo"} > 0  # jobs'),
    "slower-than-usual floor": (
        "p95_rate5m > 1  # seconds",
        "p95_rate5m > 0  # seconds",
    ),
    "gauges de-duplicated": (
        "max by (messaging_destination_name) (tracedjobs_queue_oldest_age_seconds)",
        "sum by (messaging_destination_name) (tracedjobs_queue_oldest_age_seconds)",
    ),
}


@needs_promtool
@pytest.mark.parametrize(("old", "new"), MUTATIONS.values(), ids=list(MUTATIONS))
def test_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / "alerts.yaml").write_text(text.replace(old, new))
    shutil.copy(RULES_TEST, tmp_path / "alerts_test.yaml")
    assert _promtool("check", "rules", "alerts.yaml", cwd=tmp_path).returncode == 0
    assert _promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path).returncode != 0


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), flags=re.M)
    }
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names)) >= 9
    for alert in _alerts():
        name = alert["alert"]
        assert name.startswith("Tracedjobs"), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, anchor = annotations["runbook"].split("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section #{anchor}"


PER_TASK = {"TracedjobsFailureRatioHigh", "TracedjobsLostJobs", "TracedjobsTaskSlowerThanUsual"}
PER_QUEUE = PER_TASK | {
    "TracedjobsQueueWaitHigh",
    "TracedjobsOldestReadyJobTooOld",
    "TracedjobsBacklogGrowing",
    "TracedjobsNoAliveWorker",
    "TracedjobsSentNotConsumed",
}
GLOBAL = {"TracedjobsWorkersStale", "TracedjobsMetricsAbsent"}


def test_summaries_name_the_queue_and_task_the_alert_is_about() -> None:
    assert {a["alert"] for a in _alerts()} == PER_QUEUE | GLOBAL
    for alert in _alerts():
        summary = alert["annotations"]["summary"]
        if alert["alert"] in PER_QUEUE:
            assert "$labels.messaging_destination_name" in summary, alert["alert"]
        if alert["alert"] in PER_TASK:
            assert "$labels.tracedjobs_task_name" in summary, alert["alert"]


def test_label_sets_are_bounded() -> None:
    for rule in _rules():
        for group in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in group.split(",") if label.strip()}
            assert labels <= BOUNDED, f"{rule.get('alert') or rule.get('record')}: {labels}"
        assert "tracedjobs_worker_id" not in rule["expr"]
        assert "messaging_message_id" not in rule["expr"]


def test_every_threshold_names_its_unit() -> None:
    assert unannotated_thresholds(RULES.read_text()) == []


def test_time_compressed_copy_scales_durations_and_time_thresholds_only() -> None:
    compressed = time_compressed_rules(RULES.read_text(), 30)
    rules = {r.get("alert") or r["record"]: r for g in yaml.safe_load(compressed)["groups"]
             for r in g["rules"]}  # fmt: skip
    assert rules["TracedjobsQueueWaitHigh"]["for"] == "20s"
    assert "> 10  # seconds" in rules["TracedjobsQueueWaitHigh"]["expr"]
    assert "> 0.3  # per second" in rules["TracedjobsFailureRatioHigh"]["expr"]
    assert "> 0.2  # ratio" in rules["TracedjobsFailureRatioHigh"]["expr"]  # unchanged
    assert "> 100  # jobs" in rules["TracedjobsBacklogGrowing"]["expr"]  # unchanged
    assert "[20s]) > 3  # per second" in rules["TracedjobsBacklogGrowing"]["expr"]
    assert "offset 30s" in rules["TracedjobsLostJobs"]["expr"]
    assert "[10s]" in rules["tracedjobs:attempts:rate5m"]["expr"]
    assert rules["TracedjobsLostJobs"]["for"] == "0s"
    # Line for line the same file (comments and all), only the numbers differ.
    assert len(compressed.splitlines()) == len(RULES.read_text().splitlines())


@needs_promtool
def test_time_compressed_copy_is_valid(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(time_compressed_rules(RULES.read_text(), 30))
    result = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_draw_the_alert_thresholds() -> None:
    """The red lines of dashboards/generate.py are the thresholds of the alerts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "dashboards" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    exprs = {a["alert"]: a["expr"] for a in _alerts()}
    assert f"> {generate.FAILURE_RATIO}  # ratio" in exprs["TracedjobsFailureRatioHigh"]
    assert f"> {generate.QUEUE_WAIT_P95}  # seconds" in exprs["TracedjobsQueueWaitHigh"]
    assert f"> {generate.OLDEST_READY}  # seconds" in exprs["TracedjobsOldestReadyJobTooOld"]
    assert f"> {generate.BACKLOG_GROWTH}  # per second" in exprs["TracedjobsBacklogGrowing"]
