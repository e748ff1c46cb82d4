"""The compose stack loads the alerts and both dashboards, with pinned images.

No Docker engine runs here, so the stack is never started by the tests: docker-compose.yml
is validated against the Compose Specification (tests/unit/test_deploy_files.py), the
Prometheus configuration with `promtool check config` laid out exactly as the compose file
mounts it, and the Grafana provisioning files structurally.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def _mounts(service: str) -> dict[str, str]:
    """Container path → repository path of a service's bind mounts."""
    volumes = _yaml("docker-compose.yml")["services"][service].get("volumes", [])
    found = {}
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in _yaml("docker-compose.yml")["services"].items():
        if "image" not in service:
            assert "build" in service, name
            continue
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+\.\d+(\.\d+)?", tag), f"{name}: {service['image']}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_prometheus_config_and_rules_check_as_mounted(tmp_path: Path) -> None:
    service = _yaml("docker-compose.yml")["services"]["prometheus"]
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    container_config = config_flag.split("=", 1)[1]
    mounts = _mounts("prometheus")
    assert container_config in mounts
    # Rebuild the container's /etc/prometheus from the mounts.
    for target, source in mounts.items():
        destination = tmp_path / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, destination)
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / container_config.lstrip("/"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    rules = [r for g in _yaml("dashboards/alerts.yaml")["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in output
    assert "--enable-feature=exemplar-storage" in service["command"]


def test_grafana_provisions_both_dashboards_and_shows_the_prometheus_alerts() -> None:
    mounts = _mounts("grafana")
    provisioning = next(t for t, s in mounts.items() if s == "deploy/grafana/provisioning")
    assert provisioning == "/etc/grafana/provisioning"

    (provider,) = _yaml("deploy/grafana/provisioning/dashboards/dashboards.yaml")["providers"]
    assert provider["type"] == "file"
    dashboards_dir = next(s for t, s in mounts.items() if t == provider["options"]["path"])
    uids = {
        json.loads(path.read_text())["uid"]
        for path in sorted((ROOT / dashboards_dir).glob("*.json"))
    }
    assert uids == {"tracedjobs", "tracedjobs-task"}

    datasources = _yaml("deploy/grafana/provisioning/datasources/datasources.yaml")
    assert datasources["apiVersion"] == 1
    for datasource in datasources["datasources"]:
        assert {"name", "type", "uid", "access", "url"} <= set(datasource), datasource
    (prometheus,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    # The dashboards' default datasource, and the rules Prometheus loads listed in Grafana.
    assert prometheus["uid"] == "prometheus" and prometheus["isDefault"] is True
    assert prometheus["jsonData"]["manageAlerts"] is True
    version = _yaml("docker-compose.yml")["services"]["prometheus"]["image"].split(":v")[1]
    assert prometheus["jsonData"]["prometheusVersion"] == version


def test_collector_keeps_exemplars_on_the_way_to_prometheus() -> None:
    collector = _yaml("otel-collector.yaml")
    exporters = collector["service"]["pipelines"]["metrics"]["exporters"]
    assert exporters == ["prometheus"]
    exporter = collector["exporters"]["prometheus"]
    # Exemplars are only written in the OpenMetrics exposition format.
    assert exporter["enable_open_metrics"] is True
    # job/instance from service.name/service.instance.id: the dashboards' `service` is `job`.
    scrape = _yaml("deploy/prometheus.yml")["scrape_configs"]
    assert [job["honor_labels"] for job in scrape] == [True]
