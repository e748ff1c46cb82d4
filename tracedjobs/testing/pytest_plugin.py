"""pytest fixtures for code that uses tracedjobs (opt in from a conftest.py)::

    pytest_plugins = ["tracedjobs.testing.pytest_plugin"]

- ``tracedjobs_connector``: an empty ``InMemoryConnector`` (a real test database) per test.
- ``tracedjobs_app``: your App (``tracedjobs_app = "pkg.module:app"`` in the pytest ini
  options, or ``--tracedjobs-app``) with that connector swapped in for the test.

Then ``my_task.defer(...)``, ``tracedjobs_app.run_worker(wait=False)`` and
``tracedjobs_connector.jobs`` as in Procrastinate's testing how-to.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracedjobs.app import App
from tracedjobs.testing import InMemoryConnector


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = "the App under test for the tracedjobs_app fixture, as package.module:app"
    parser.addini("tracedjobs_app", help_text, default="")
    parser.addoption("--tracedjobs-app", default=None, help=help_text)


@pytest.fixture
def tracedjobs_connector() -> InMemoryConnector:
    return InMemoryConnector()


@pytest.fixture
def tracedjobs_app(
    request: pytest.FixtureRequest, tracedjobs_connector: InMemoryConnector
) -> Iterator[App]:
    path = request.config.getoption("--tracedjobs-app") or request.config.getini("tracedjobs_app")
    if not path:
        pytest.fail(
            "the tracedjobs_app fixture needs the App: set tracedjobs_app = 'pkg.module:app' "
            "in the pytest ini options or pass --tracedjobs-app"
        )
    with App.from_path(str(path)).replace_connector(tracedjobs_connector) as app:
        yield app
