"""Several real worker processes share a backlog: every job runs exactly once."""

from __future__ import annotations

from pathlib import Path

import tracedjobs
from tests.helpers import WorkerProcess, query, scalar, wait_until


def test_three_workers_of_concurrency_five_run_3000_jobs_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    app = tracedjobs.App(database_url=db_url)
    record = app.task(name="record_async")(lambda **_: None)  # same name as the test app's task
    record.batch_defer(*({"label": str(i)} for i in range(3000)))
    app.close()

    workers = [
        WorkerProcess(
            db_url,
            "tests.apps.basic:app",
            "--concurrency",
            "5",
            "--one-shot",
            log_path=tmp_path / f"w{i}.log",
        )
        for i in range(3)
    ]
    try:
        codes = [w.wait(timeout=240) for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert codes == [0, 0, 0], [w.output()[-2000:] for w in workers]

    assert scalar(db_url, "SELECT count(*) FROM test_runs") == 3000
    duplicates = query(
        db_url, "SELECT job_id, count(*) FROM test_runs GROUP BY job_id HAVING count(*) > 1"
    )
    assert duplicates == []
    assert scalar(db_url, "SELECT count(DISTINCT job_id) FROM test_runs") == 3000
    assert scalar(db_url, "SELECT count(*) FROM tracedjobs_jobs WHERE status <> 'succeeded'") == 0
    # All three processes took part.
    assert scalar(db_url, "SELECT count(DISTINCT pid) FROM test_runs") == 3
    # One attempt per job, each with its outcome.
    assert (
        scalar(db_url, "SELECT count(*) FROM tracedjobs_attempts WHERE outcome = 'succeeded'")
        == 3000
    )
    # Clean exits removed the worker rows.
    wait_until(lambda: scalar(db_url, "SELECT count(*) FROM tracedjobs_workers") == 0, 10)
