from __future__ import annotations

import tracedjobs


def test_defer_then_worker_runs_job(app: tracedjobs.App) -> None:
    calls: list[int] = []

    @app.task
    def add(a: int, b: int) -> None:
        calls.append(a + b)

    job_id = add.defer(a=1, b=2)
    app.run_worker(wait=False, install_signal_handlers=False)
    assert calls == [3]
    job = app.job_manager.get_job(job_id)
    assert job.status == tracedjobs.Status.SUCCEEDED
    assert [e.type for e in job.events] == ["deferred", "started", "succeeded"]
    assert job.attempt_records[0].outcome == "succeeded"
