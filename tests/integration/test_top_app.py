"""The interactive `tracedjobs top` screen, driven with Textual's pilot against a real database."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

import tracedjobs
from tests.helpers import query, scalar
from tests.integration.test_worker import run_until_idle

pytest.importorskip("textual")
pytestmark = pytest.mark.anyio

from tracedjobs.tui.app import ConfirmScreen, DetailScreen, HelpScreen, TopApp  # noqa: E402
from tracedjobs.tui.model import Options  # noqa: E402


def screen_text(top: TopApp) -> str:
    """The terminal as the user sees it, as plain text (what a screenshot would show)."""
    width, height = top.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(top.screen._compositor.render_update(full=True))
    return console.export_text()


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the screen")
        await pilot.pause(0.05)


@pytest.fixture
def jobs(app: tracedjobs.App) -> dict[str, list[int]]:
    @app.task(queue="mail")
    def send(to: str) -> None: ...

    @app.task(queue="img", retry=0)
    def resize(image_id: int) -> None:
        raise OSError(f"disk full for {image_id}")

    failed = [resize.defer(image_id=i) for i in (1, 2)]
    run_until_idle(app)
    waiting = [send.defer(to=f"u{i}@example.com") for i in range(3)]
    return {"failed": failed, "waiting": waiting}


def top_app(app: tracedjobs.App, **kw: Any) -> TopApp:
    return TopApp(app, Options(seconds=30), interval=0.3, **kw)


async def test_keys_move_open_detail_and_go_back(app: tracedjobs.App, jobs: dict[str, list[int]]) -> None:
    top = top_app(app, trace_url="https://tempo.example/trace/{trace_id}")
    async with top.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: top.selected_job_id() is not None)
        first = top.selected_job_id()
        assert first == jobs["waiting"][-1]  # newest transition on top
        await pilot.press("j", "j")
        assert top.selected_job_id() == jobs["waiting"][0]
        await pilot.press("k")
        assert top.selected_job_id() == jobs["waiting"][1]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(top.screen, DetailScreen))
        text = screen_text(top)
        assert f"job #{jobs['waiting'][1]}" in text and '"to": "u1@example.com"' in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(top.screen, DetailScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(top.screen, HelpScreen))
        assert "freeze" in screen_text(top)
        await pilot.press("escape")
        await pilot.press("q")
    assert top.return_code in (0, None)


async def test_detail_shows_traceback_and_trace_link(app: tracedjobs.App, jobs: dict[str, list[int]]) -> None:
    query(app.connector.url, "UPDATE tracedjobs_attempts SET trace_id = %s WHERE job_id = %s",
          ("4bf92f3577b34da6a3ce929d0e0e4736", jobs["failed"][0]))
    top = top_app(app, trace_url="https://tempo.example/trace/{trace_id}")
    async with top.run_test(size=(120, 60)) as pilot:
        await until(pilot, lambda: top.refreshes)
        await pilot.press("slash", *f"id:{jobs['failed'][0]}", "enter")
        await until(pilot, lambda: top.selected_job_id() == jobs["failed"][0])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(top.screen, DetailScreen))
        text = screen_text(top)
        assert "Traceback (most recent call last)" in text
        assert "OSError: disk full for 1" in text
        assert "https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736" in text


async def test_filter_then_retry_all_matching_after_confirming_the_count(
    app: tracedjobs.App, jobs: dict[str, list[int]]
) -> None:
    url = app.connector.url
    top = top_app(app)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.refreshes)
        await pilot.press("slash", *"status:failed", "enter")
        await until(pilot, lambda: "JOBS matching status:failed" in screen_text(top))
        await until(pilot, lambda: top.selected_job_id() in jobs["failed"])
        await pilot.press("R")
        await until(pilot, lambda: isinstance(top.screen, ConfirmScreen))
        assert "Retry all 2 failed job(s) matching «status:failed»?" in screen_text(top)
        await pilot.press("escape")  # no: nothing changes
        await until(pilot, lambda: not isinstance(top.screen, ConfirmScreen))
        assert scalar(url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'failed'") == 2
        await pilot.press("R")
        await until(pilot, lambda: isinstance(top.screen, ConfirmScreen))
        await pilot.press("a")
        await until(pilot, lambda: scalar(
            url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'failed'") == 0)
    statuses = query(url, "SELECT status FROM tracedjobs_jobs WHERE id = ANY(%s)", (jobs["failed"],))
    assert {s for (s,) in statuses} == {"todo"}
    assert scalar(url, "SELECT count(*) FROM tracedjobs_events WHERE type = 'retried'") == 2


async def test_cancel_the_selected_job(app: tracedjobs.App, jobs: dict[str, list[int]]) -> None:
    url = app.connector.url
    top = top_app(app)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.selected_job_id() == jobs["waiting"][-1])
        await pilot.press("c")
        await until(pilot, lambda: isinstance(top.screen, ConfirmScreen))
        assert f"Cancel job #{jobs['waiting'][-1]}?" in screen_text(top)
        await pilot.press("y")
        await until(pilot, lambda: scalar(
            url, "SELECT status FROM tracedjobs_jobs WHERE id = %s", (jobs["waiting"][-1],)
        ) == "cancelled")
    assert scalar(url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'todo'") == 2


async def test_bad_filter_says_why_and_keeps_the_prompt(app: tracedjobs.App, jobs: Any) -> None:
    top = top_app(app)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.refreshes)
        await pilot.press("slash", *"colour:red", "enter")
        await until(pilot, lambda: "unknown filter key 'colour'" in screen_text(top))
        assert not top.options.filter.active
        await pilot.press("escape")


async def test_read_only_hides_and_refuses_actions(app: tracedjobs.App, jobs: Any) -> None:
    top = top_app(app, read_only=True)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.selected_job_id() is not None)
        footer = screen_text(top).splitlines()[-1]
        assert "Filter" in footer and "Retry" not in footer and "Cancel" not in footer
        await pilot.press("c", "R")
        await pilot.pause(0.3)
        assert not isinstance(top.screen, ConfirmScreen)
    assert scalar(app.connector.url, "SELECT count(*) FROM tracedjobs_jobs WHERE status = 'todo'") == 3


async def test_freeze_stops_the_tail(app: tracedjobs.App, jobs: Any) -> None:
    @app.task(name="late")
    def late() -> None: ...

    top = top_app(app)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.refreshes)
        await pilot.press("f")
        new_id = late.defer()
        await until(pilot, lambda: any(t.job_id == new_id for t in top.tail))
        assert f"#{new_id} " not in screen_text(top) and "frozen" in screen_text(top)
        await pilot.press("f")
        await until(pilot, lambda: f"#{new_id} " in screen_text(top))


async def test_lost_connection_shows_unreachable_then_recovers(app: tracedjobs.App, jobs: Any) -> None:
    top = top_app(app)
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.refreshes)
        pid = top._conn.info.backend_pid  # type: ignore[union-attr]
        query(app.connector.url, "SELECT pg_terminate_backend(%s)", (pid,))
        await until(pilot, lambda: "database unreachable, retrying" in screen_text(top))
        count = top.refreshes
        await until(pilot, lambda: top.refreshes > count and top.error is None)
        assert "unreachable" not in screen_text(top)


async def test_screen_at_80x24_collapses_panels(app: tracedjobs.App, db_url: str, jobs: Any) -> None:
    query(db_url, "INSERT INTO tracedjobs_workers (id, name, hostname, pid, queues, concurrency) "
                  "VALUES (gen_random_uuid(), 'w-small', 'web-1', 42, '{mail}', 4)")
    top = top_app(app)
    async with top.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: top.refreshes and "w-small" in screen_text(top))
        lines = screen_text(top).splitlines()
        text = "\n".join(lines)
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        # The time comes first and stays whole; the long database URL is what gets cut.
        assert re.match(r" tracedjobs top  \d\d:\d\d:\d\d  schema \d+ — ", lines[0]), lines[0]
        assert "ready 3" in lines[1] and "1 alive" in lines[1]
        assert "web-1:42" in text and "alive" in text
        assert " LIVE" in text and "q Quit" in lines[-1] and "/ Filter" in lines[-1]
        assert "FAILED" not in text  # the failures panel folds away on a short terminal


async def test_screen_at_160x48_uses_the_width(app: tracedjobs.App, db_url: str, jobs: Any) -> None:
    query(db_url, "INSERT INTO tracedjobs_workers (id, name, hostname, pid, queues, concurrency, "
                  "last_heartbeat_at) VALUES (gen_random_uuid(), 'w-old', 'web-2', 7, NULL, 4, "
                  "now() - interval '5 minutes')")
    top = top_app(app)
    async with top.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: top.refreshes and "w-old" in screen_text(top))
        lines = screen_text(top).splitlines()
        text = "\n".join(lines)
        assert len(lines) == 48
        # Queues and workers side by side; failures shown with their message.
        assert any("QUEUE" in line and "WORKER" in line for line in lines)
        assert "STALE" in text and "0 alive" in lines[1] and "1 stale" in lines[1]
        assert "OSError: disk full for" in text


async def test_a_stalled_refresh_says_the_screen_is_not_live(
    app: tracedjobs.App, db_url: str, jobs: Any
) -> None:
    import psycopg

    top = top_app(app)  # interval 0.3 s: not live after 2 × 0.3 + 3 s without fresh data
    async with top.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: top.refreshes)
        assert "NOT LIVE" not in screen_text(top)
        # A refresh that hangs (not an error): its query waits behind a lock.
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE tracedjobs_jobs IN ACCESS EXCLUSIVE MODE")
            stuck_at = top.refreshes
            await until(pilot, lambda: "NOT LIVE: last data" in screen_text(top))
            assert top.refreshes == stuck_at
        await until(pilot, lambda: top.refreshes > stuck_at
                    and "NOT LIVE" not in screen_text(top))
