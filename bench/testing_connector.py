"""What a test pays for tracedjobs.testing.InMemoryConnector (a real throwaway database).

Times, per simulated test: making the connector (the first one of a process clones the
template), deferring two jobs (one sync task, one async), ``run_worker(wait=False)`` and
reading ``connector.jobs``. Prints medians over ``--tests`` tests.

    TRACEDJOBS_TEST_DATABASE_URL=postgresql://root@127.0.0.1:5432/test \
        python bench/testing_connector.py --tests 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import tracedjobs
from tracedjobs import testing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=50)
    args = parser.parse_args()

    app = tracedjobs.App(database_url="postgresql://unused@127.0.0.1:1/unused")
    ran: list[int] = []

    @app.task(name="sync_task")
    def sync_task(x: int) -> None:
        ran.append(x)

    @app.task(name="async_task")
    async def async_task(x: int) -> None:
        ran.append(x)

    started = time.perf_counter()
    testing.InMemoryConnector()
    first = time.perf_counter() - started

    phases: dict[str, list[float]] = {"connector": [], "defer x2": [], "run_worker": [], "all": []}
    for i in range(args.tests):
        t0 = time.perf_counter()
        connector = testing.InMemoryConnector()
        t1 = time.perf_counter()
        with app.replace_connector(connector):
            sync_task.defer(x=i)
            async_task.defer(x=i)
            t2 = time.perf_counter()
            app.run_worker(wait=False, install_signal_handlers=False)
            t3 = time.perf_counter()
            assert [j["status"] for j in connector.jobs.values()] == ["succeeded"] * 2
        t4 = time.perf_counter()
        for key, value in (
            ("connector", t1 - t0),
            ("defer x2", t2 - t1),
            ("run_worker", t3 - t2),
            ("all", t4 - t0),
        ):
            phases[key].append(value)

    print(f"first connector of the process (clone of the template): {first * 1000:.0f} ms")
    print(f"per test, median of {args.tests}:")
    for key, values in phases.items():
        print(f"  {key:<11} {statistics.median(values) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
