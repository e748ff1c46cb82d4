"""A real Prometheus for tests (the Debian `prometheus` binary), and the rules it loads.

`Prometheus` scrapes the given targets every second, evaluates its rules every second and
answers the HTTP API; `time_compressed_rules` derives the test copy of dashboards/alerts.yaml
in which time runs faster (see its docstring).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, wait_until

RULES = ROOT / "dashboards" / "alerts.yaml"

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs the prometheus binary (apt-get install prometheus; .ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def reachable(url: str) -> bool:
    try:
        http_get(url, timeout=2)
        return True
    except OSError:
        return False


class Prometheus:
    """A real Prometheus with a throw-away TSDB, scraping ``targets`` (job → addresses)."""

    def __init__(
        self,
        tmp: Path,
        targets: dict[str, list[str]],
        *,
        rules: str | None = None,
        interval: str = "1s",
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = [
            "global:",
            f"  scrape_interval: {interval}",
            f"  evaluation_interval: {interval}",
        ]
        if rules is not None:
            (tmp / "rules.yaml").write_text(rules)
            lines += ["rule_files:", "  - rules.yaml"]
        lines.append("scrape_configs:")
        for job, addresses in targets.items():
            lines += [
                f"  - job_name: {job}",
                "    static_configs:",
                f"      - targets: {json.dumps(addresses)}",
            ]
        config = tmp / "prometheus.yml"
        config.write_text("\n".join(lines) + "\n")
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

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(lambda: reachable(f"{self.url}/-/ready"), timeout, "Prometheus ready")

    def _api(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as exc:  # Prometheus says why in the body
            raise AssertionError(f"{url}: {exc}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return list(self._api("query", **params)["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr`` (None when it returns nothing)."""
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr}: {result}"
        return float(result[0]["value"][1]) if result else None

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self._api(f"label/{label}/values", **{"match[]": match}))

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), from /api/v1/alerts."""
        return list(self._api("alerts")["alerts"])

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.alerts() if a["state"] == "firing"}

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._api("rules")["groups"])

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        return list(self._api("query_exemplars", query=expr, start=start, end=end))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# -- the time-compressed test copy of the rules -----------------------------------------------

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# A threshold: a comparison with a number, then the unit comment that alerts.yaml requires.
_THRESHOLD = re.compile(
    r"(?P<op>[<>]=?|[!=]=)\s*(?P<number>\d+(?:\.\d+)?)(?P<rest>.*#\s*(?P<unit>[a-z ]+))"
)
UNITS = ("seconds", "per second", "ratio", "jobs", "workers", "attempts")


def _seconds(duration: str) -> float:
    total = 0.0
    for number, unit in _DURATION.findall(duration):
        total += int(number) * _SECONDS[unit]
    return total


def _duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _number(value: float) -> str:
    return f"{value:g}"


def time_compressed_rules(text: str, factor: float) -> str:
    """alerts.yaml as if time ran ``factor`` times faster.

    Every duration — `for:`, range selectors `[5m]`, `offset 15m` — is divided by
    ``factor``; so is every threshold marked `# seconds`, and thresholds marked
    `# per second` are multiplied by it. Counts and ratios stay. The expressions are
    otherwise the real ones, so the incident tests exercise the shipped rules.
    """
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("for:"):
            value = stripped.split(":", 1)[1].strip()
            line = line[: len(line) - len(stripped)] + f"for: {_duration(_seconds(value) / factor)}"
        elif not stripped.startswith("#"):
            line = re.sub(
                r"\[(\d+[smhdwy])\]",
                lambda m: f"[{_duration(_seconds(m.group(1)) / factor)}]",
                line,
            )
            line = re.sub(
                r"\boffset (\d+[smhdwy])\b",
                lambda m: f"offset {_duration(_seconds(m.group(1)) / factor)}",
                line,
            )
            line = _THRESHOLD.sub(lambda m: _scaled_threshold(m, factor), line)
        out.append(line)
    return "\n".join(out) + "\n"


def _scaled_threshold(match: re.Match[str], factor: float) -> str:
    unit = match.group("unit").strip()
    value = float(match.group("number"))
    if unit.startswith("seconds"):
        value /= factor
    elif unit.startswith("per second"):
        value *= factor
    return f"{match.group('op')} {_number(value)}{match.group('rest')}"


def unannotated_thresholds(text: str) -> list[str]:
    """Lines of rule expressions comparing with a number but naming no unit."""
    bad = []
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if re.search(r"([<>]=?|[!=]=)\s*\d", code):
            match = _THRESHOLD.search(line)
            if match is None or not match.group("unit").strip().startswith(UNITS):
                bad.append(line.strip())
    return bad
