"""The deployment files (§10) are well-formed and agree with each other.

docker-compose.yml is validated against the Compose Specification's JSON schema
(tests/schemas/compose-spec.json, vendored from check-jsonschema 0.39.0, Apache-2.0: see
LICENSE.compose-spec). The OpenTelemetry Collector publishes no JSON schema, so its
config is checked against the rules the collector applies when it loads a config.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"


def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(_yaml("docker-compose.yml"))


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return dict(_yaml("otel-collector.yaml"))


def _compose_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


# -- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _compose_errors(compose) == []


def test_compose_schema_rejects_a_misspelt_service_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["comand"] = broken["services"]["worker"].pop("command")
    assert any("comand" in e for e in _compose_errors(broken))


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "otel-collector", "prometheus", "tempo", "grafana", "worker", "webapp"):
        assert name in services, name
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_compose_mounts_only_files_of_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_worker_runs_the_example_app_and_sends_otlp_to_the_collector(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    import tracedjobs
    from tracedjobs.utils import import_object

    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:2] == ["tracedjobs", "worker"]
    app_path = command[command.index("--app") + 1]
    assert isinstance(import_object(app_path), tracedjobs.App)

    http_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    env = compose["x-tracedjobs-env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{http_port}"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    for name in ("worker", "webapp"):
        assert compose["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        )


def test_prometheus_keeps_exemplars_and_scrapes_the_collector(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]
    config = _yaml("deploy/prometheus.yml")
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert f"otel-collector:{port}" in targets


# -- otel-collector.yaml --------------------------------------------------------------------

# Signals each component used here supports (from the components' documentation).
SIGNALS = {
    ("receivers", "otlp"): {"traces", "metrics", "logs"},
    ("processors", "batch"): {"traces", "metrics", "logs"},
    ("processors", "memory_limiter"): {"traces", "metrics", "logs"},
    ("exporters", "otlp"): {"traces", "metrics", "logs"},
    ("exporters", "prometheus"): {"metrics"},
    ("extensions", "health_check"): set(),
}
COMPONENT_ID = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_.-]+)?$")


def test_collector_config_is_consistent(collector: dict[str, Any]) -> None:
    assert set(collector) <= {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
    assert collector["receivers"] and collector["exporters"], "the collector needs both"
    used: set[tuple[str, str]] = set()
    for pipeline_id, pipeline in collector["service"]["pipelines"].items():
        signal = pipeline_id.split("/")[0]
        assert signal in ("traces", "metrics", "logs"), pipeline_id
        assert pipeline.get("receivers") and pipeline.get("exporters"), pipeline_id
        for kind in ("receivers", "processors", "exporters"):
            for component_id in pipeline.get(kind, []):
                assert COMPONENT_ID.match(component_id), component_id
                assert component_id in collector.get(kind, {}), f"{pipeline_id}: no {kind} {component_id}"
                component_type = component_id.split("/")[0]
                assert signal in SIGNALS[(kind, component_type)], f"{component_id} cannot do {signal}"
                used.add((kind, component_id))
    for extension in collector["service"].get("extensions", []):
        assert extension in collector["extensions"], extension
        used.add(("extensions", extension))
    defined = {
        (kind, component_id)
        for kind in ("receivers", "processors", "exporters", "extensions")
        for component_id in collector.get(kind, {})
    }
    assert defined == used, f"defined but unused: {defined - used}"


def test_collector_receives_otlp_and_sends_traces_to_tempo_metrics_to_prometheus(
    collector: dict[str, Any],
) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"

    pipelines = collector["service"]["pipelines"]
    (traces_exporter,) = pipelines["traces"]["exporters"]
    tempo_endpoint = collector["exporters"][traces_exporter]["endpoint"]
    tempo = _yaml("deploy/tempo.yaml")
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert tempo_endpoint == "tempo:" + tempo_grpc.rsplit(":", 1)[1]

    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    prometheus = collector["exporters"]["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889"
    assert prometheus["enable_open_metrics"] is True  # exemplars need OpenMetrics
    assert prometheus["resource_to_telemetry_conversion"]["enabled"] is True


# -- Grafana --------------------------------------------------------------------------------


def test_grafana_links_exemplars_to_tempo_and_loads_the_dashboards(compose: dict[str, Any]) -> None:
    datasources = _yaml("deploy/grafana/provisioning/datasources/datasources.yaml")["datasources"]
    by_uid = {d["uid"]: d for d in datasources}
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"
    assert by_uid[destination["datasourceUid"]]["type"] == "tempo"

    providers = _yaml("deploy/grafana/provisioning/dashboards/dashboards.yaml")["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./dashboards"] == providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_queries_use_only_defined_variables() -> None:
    dashboard = json.loads((ROOT / "dashboards" / "tracedjobs.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]} | {"__rate_interval"}
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert targets
    for target in targets:
        assert target["datasource"]["uid"] == "${datasource}"
        assert set(re.findall(r"\$(\w+)", target["expr"])) <= variables, target["expr"]
