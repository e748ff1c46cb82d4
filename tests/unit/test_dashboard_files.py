"""The dashboards JSON is what dashboards/generate.py writes, and is consistent with the rules.

(That every query returns data on a real worker's metrics is tests/acceptance/test_dashboards.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {
    "tracedjobs": ROOT / "dashboards" / "tracedjobs.json",
    "tracedjobs-task": ROOT / "dashboards" / "tracedjobs-task.json",
}
RULES = ROOT / "dashboards" / "alerts.yaml"


def _load(uid: str) -> dict[str, Any]:
    return dict(json.loads(DASHBOARDS[uid].read_text()))


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_regenerating_gives_the_checked_in_json() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_generator_check_notices_a_stale_file(tmp_path: Path, monkeypatch: Any) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "dashboards" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main([]) == 0  # writes both files
    assert generate.main(["--check"]) == 0
    (tmp_path / "tracedjobs-task.json").write_text("{}")
    assert generate.main(["--check"]) == 1


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_dashboard_has_the_variables_and_unique_panel_ids(uid: str) -> None:
    dashboard = _load(uid)
    assert dashboard["uid"] == uid
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "service", "queue", "task"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # The task dashboard drills into one task; the overview takes several.
    assert variables["task"]["multi"] is (uid == "tracedjobs")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for title, target in _targets(dashboard):
        assert target["datasource"]["uid"] == "${datasource}", title
        used = set(re.findall(r"\$(\w+)", target["expr"]))
        assert used <= set(variables) | {"__rate_interval"}, (title, used)


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_raw_histogram_panels_ask_for_exemplars(uid: str) -> None:
    """Exemplars belong to the raw bucket series (recorded series have none)."""
    targets = _targets(_load(uid))
    raw = [t for _, t in targets if re.search(r"_seconds_bucket\{", t["expr"])]
    assert len(raw) >= 4
    for title, target in targets:
        assert target["exemplar"] is (target in raw), title


def test_dashboards_use_only_recorded_names_that_the_rules_record() -> None:
    recorded = {
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
        if "record" in r
    }  # fmt: skip
    used = set()
    for uid in DASHBOARDS:
        for _, target in _targets(_load(uid)):
            used |= set(re.findall(r"tracedjobs:[a-z0-9_:]+", target["expr"]))
    assert used, "the dashboards share no recording rule with the alerts"
    assert used <= recorded, used - recorded


def test_task_dashboard_drills_into_one_task() -> None:
    panels = {p["title"]: p for p in _load("tracedjobs-task")["panels"]}
    for title in (
        "Throughput by outcome",
        "Errors by error.type",
        "Retries, lost and deferred attempts",
        "Duration",
        "Queue wait",
    ):
        assert title in panels, title
    assert panels["Duration"]["type"] == panels["Queue wait"]["type"] == "heatmap"
    assert "by (error_type)" in panels["Errors by error.type"]["targets"][0]["expr"]


def test_overview_links_its_slowest_tasks_to_the_task_dashboard() -> None:
    overview = _load("tracedjobs")
    (panel,) = [p for p in overview["panels"] if p["title"].startswith("Top 10 slowest tasks")]
    assert panel["targets"][0]["expr"].startswith("topk(10, ")
    (link,) = panel["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith("/d/tracedjobs-task/")
    assert "var-task=${__field.labels.tracedjobs_task_name}" in link["url"]
    assert any(lk["url"].startswith("/d/tracedjobs-task/") for lk in overview["links"])
