"""The incident tests: real Prometheus, real workers, real failures (see test_incidents.py)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "incidents: alert rules proven on real incidents (a few minutes; deselect with "
        "-m 'not incidents')",
    )
