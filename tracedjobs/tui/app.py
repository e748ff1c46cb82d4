"""The interactive `tracedjobs top` screen (Textual). Imported only by that command."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import psycopg
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from tracedjobs.exceptions import TracedJobsError
from tracedjobs.tui import render
from tracedjobs.tui.model import (
    FILTER_HELP,
    FilterError,
    Options,
    Snapshot,
    TailEntry,
    load_snapshot_async,
    parse_filter,
)

TAIL_KEEP = 500
# Notifications wake a refresh, but never more often than this (seconds).
MIN_REFRESH_GAP = 0.5
UNREACHABLE = "database unreachable, retrying"
NOT_ANSWERING = "database not answering, retrying"

HELP = """\
[b]tracedjobs top[/b] — keys

  ↑/↓ or j/k   move in the jobs table (pauses following the newest rows)
  g or Home    follow the newest rows again
  Enter        job detail (args, events, attempts, tracebacks, trace link)
  /            filter: {filter_help}
  R            retry the selected job, or every failed job matching the filter
  c            cancel the selected job, or every waiting job matching the filter
  f            freeze / unfreeze the live tail
  r            refresh now
  Esc          back (follow again, clear the filter, close a view)
  ?            this help
  q            quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Back")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(HELP.format(filter_help=FILTER_HELP))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmScreen(ModalScreen[str | None]):
    """Asks before an action; returns the chosen button id (or None)."""

    BINDINGS = [Binding("escape,n", "choose('')", "No")]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                for key, label in self.choices:
                    yield Button(label, id=key, variant="warning")
                yield Button("No (Esc)", id="no")

    def on_key(self, event: Any) -> None:
        if event.key == "y" and len(self.choices) == 1:
            self.dismiss(self.choices[0][0])
            event.stop()
            return
        for key, _ in self.choices:
            if event.key == key[-1]:  # ids end with their key letter: do_y, do_a, do_s
                self.dismiss(key)
                event.stop()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "no" else event.button.id)

    def action_choose(self, value: str) -> None:
        self.dismiss(value or None)


def merge_tail(shown: list[TailEntry], fresh: list[TailEntry]) -> list[TailEntry]:
    """The tail with the fresh entries in: each entry once (by key, the fresh version wins:
    a running attempt's start gains its duration), newest first, at most TAIL_KEEP."""
    by_key = {t.key: t for t in shown}
    by_key.update((t.key, t) for t in fresh)
    ordered = sorted(by_key.values(), key=lambda t: (t.at, t.attempt or 0), reverse=True)
    return ordered[:TAIL_KEEP]


class DetailScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, renderable: Any) -> None:
        super().__init__()
        self.renderable = renderable

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.renderable, id="detail")
        yield Footer()


class JobsTable(DataTable[Any]):
    """The jobs list. Moving in it (keys, click, wheel) pauses following the newest rows.

    The app's own cursor moves go through ``move_cursor``, never through these actions, so
    only the user pauses the list.
    """

    BINDINGS = [
        Binding("home,g", "follow", "Follow newest", show=False),
        Binding("ctrl+home", "follow", "Follow newest", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_user_move: Callable[[], None] | None = None
        self.on_follow: Callable[[], None] | None = None

    def _user_moved(self) -> None:
        if self.on_user_move is not None:
            self.on_user_move()

    def action_follow(self) -> None:
        if self.on_follow is not None:
            self.on_follow()

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        self._user_moved()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._user_moved()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._user_moved()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._user_moved()

    def action_scroll_bottom(self) -> None:
        super().action_scroll_bottom()
        self._user_moved()

    async def _on_click(self, event: Any) -> None:
        await super()._on_click(event)
        self._user_moved()

    def _on_mouse_scroll_down(self, event: Any) -> None:
        super()._on_mouse_scroll_down(event)
        self._user_moved()


class MainScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Horizontal(id="toprow"):
            yield Static(id="queues")
            yield Static(id="workers")
        yield Label(" LIVE", id="jobs-title")
        yield JobsTable(id="jobs", cursor_type="row", zebra_stripes=False)
        yield Static(id="failures")
        with Vertical(id="filterbox"):
            yield Label("", id="filter-error")
            yield Input(placeholder=f"filter: {FILTER_HELP}", id="filter")
        yield Footer()

    def on_resize(self, event: Any) -> None:
        self.set_class(event.size.height < 32, "short")
        self.set_class(event.size.width >= 140, "wide")


class TopApp(App[None]):
    TITLE = "tracedjobs top"
    CSS = """
    #header { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    #toprow { height: auto; layout: vertical; }
    #queues, #workers { height: auto; max-height: 9; padding: 0 0 0 1; }
    MainScreen.wide #toprow { layout: horizontal; }
    MainScreen.wide #queues, MainScreen.wide #workers { width: 1fr; max-height: 14; }
    MainScreen.short #queues, MainScreen.short #workers { max-height: 5; }
    #jobs-title { text-style: bold; }
    #jobs { height: 1fr; min-height: 4; }
    #failures { height: auto; max-height: 8; padding: 0 0 0 1; }
    MainScreen.short #failures { display: none; }
    #filterbox { dock: bottom; display: none; height: auto; margin-bottom: 1; }
    #filterbox.shown { display: block; }
    #filter-error { color: $error; }
    #dialog {
        width: 80%; height: auto; border: thick $warning; padding: 1 2; background: $surface;
    }
    ConfirmScreen, HelpScreen { align: center middle; }
    #buttons { height: auto; margin-top: 1; }
    #buttons Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("R", "retry", "Retry"),
        Binding("c", "cancel", "Cancel"),
        Binding("f", "freeze", "Freeze"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(
        self,
        tj_app: Any,
        options: Options,
        *,
        interval: float = 2.0,
        read_only: bool = False,
        trace_url: str | None = None,
    ) -> None:
        super().__init__()
        self.tj = tj_app
        self.options = options
        self.interval = interval
        self.read_only = read_only
        self.trace_url = trace_url
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.frozen = False
        # Newest rows on top with the cursor on them, until the user moves in the list.
        self.following = True
        self._list_title = "LIVE"
        # When the screen last showed fresh data (monotonic); what "live" is measured by.
        self.started = time.monotonic()
        self.last_ok: float | None = None
        self.stale_after = 2 * interval + 3.0
        self.query_timeout = max(10.0, 3 * interval)
        self.tail: list[TailEntry] = []  # newest first, at most TAIL_KEEP
        self.last_at = 0.0  # when the newest entry shown happened (database clock)
        self.refreshes = 0
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._database = ""
        # Row key → job id, for the table as currently shown.
        self._row_jobs: dict[str, int] = {}

    # -- life cycle ----------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    def on_mount(self) -> None:
        self._database = self.tj.connector.safe_url
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        main = self._main()
        if main is not None:
            table = main.query_one("#jobs", JobsTable)
            table.on_user_move = self.pause_following
            table.on_follow = self.follow
        self._render()
        self._refresh_loop()
        self._listen_loop()
        # Redraw the header every second, so a stalled refresh shows its age (an updating
        # clock alone would look live).
        self.set_interval(1.0, self._render_header)

    def on_resize(self) -> None:
        self._render()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in ("retry", "cancel"))

    async def on_unmount(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    # -- data ------------------------------------------------------------------------------

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await self.tj.connector.connect_async(timeout=3)
        return self._conn

    @work(exclusive=True, group="refresh")
    async def _refresh_loop(self) -> None:
        while True:
            await self.refresh_now()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                await asyncio.sleep(MIN_REFRESH_GAP)

    async def refresh_now(self) -> None:
        """Load one snapshot (one query) and show it; on a database error say so and go on."""
        try:
            conn = await self._connection()
            snapshot = await asyncio.wait_for(
                load_snapshot_async(
                    # A second of overlap: entries that share a timestamp with the newest
                    # one shown may have been cut by the previous refresh's limit.
                    self.tj, self.options, after=max(self.last_at - 1.0, 0.0), conn=conn
                ),
                timeout=self.query_timeout,
            )
        except (psycopg.Error, OSError, TracedJobsError, TimeoutError) as exc:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            self._conn = None
            self.error = NOT_ANSWERING if isinstance(exc, TimeoutError) else UNREACHABLE
        else:
            self.error = None
            self.snapshot = snapshot
            self.tail = merge_tail(self.tail, snapshot.tail)
            self.last_at = max(self.last_at, snapshot.last_at)
            self.refreshes += 1
            self.last_ok = time.monotonic()
        self._render()

    def stale_for(self) -> float | None:
        """Seconds since the data on screen was fresh, once that is longer than it should be."""
        age = time.monotonic() - (self.last_ok or self.started)
        return age if age > self.stale_after else None

    @work(exclusive=True, group="listen")
    async def _listen_loop(self) -> None:
        """LISTEN for new events and new ready jobs: a notification wakes a refresh."""
        while True:
            try:
                conn = await self.tj.connector.connect_session_async(timeout=3)
                async with conn:
                    await conn.execute("LISTEN tracedjobs_events")
                    await conn.execute("LISTEN tracedjobs_jobs")
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError, TracedJobsError):
                pass
            await asyncio.sleep(max(self.interval, 1.0))

    # -- drawing ---------------------------------------------------------------------------

    def _main(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def _render(self) -> None:
        main = self._main()
        if main is None:
            return
        with contextlib.suppress(NoMatches):  # not composed yet
            self._draw(main)

    def _render_header(self) -> None:
        main = self._main()
        if main is not None:
            with contextlib.suppress(NoMatches):
                main.query_one("#header", Static).update(
                    render.header(self.snapshot, error=self.error, database=self._database,
                                  width=self.size.width, stale_for=self.stale_for())
                )

    def _draw(self, main: MainScreen) -> None:
        s = self.snapshot
        width = self.size.width
        self._render_header()
        if s is None:
            return
        # Side by side on a wide screen (see CSS): each table gets half the width.
        half = width // 2 - 2 if main.has_class("wide") else width - 2
        main.query_one("#queues", Static).update(render.queues(s, half))
        main.query_one("#workers", Static).update(render.workers(s, half))
        main.query_one("#failures", Static).update(render.failures(s, width=width - 2))
        self._fill_table(main)

    def _update_title(self) -> None:
        main = self._main()
        if main is None or (self.frozen and not self.options.filter.active):
            return
        title = main.query_one("#jobs-title", Label)
        if self.following:
            title.update(f" {self._list_title}")
            return
        table = main.query_one("#jobs", JobsTable)
        newer = table.cursor_row if table.row_count else 0
        marker = Text(f" {self._list_title} ")
        marker.append(f" PAUSED · {newer} newer above · g/Home/Esc: follow newest ",
                      style="bold black on yellow")
        title.update(marker)

    def _fill_table(self, main: MainScreen) -> None:
        table = main.query_one("#jobs", JobsTable)
        title = main.query_one("#jobs-title", Label)
        filtered = self.options.filter.active
        if filtered:
            self._list_title = (
                f"JOBS matching {self.options.filter.text} (newest first)"
                f"{render.searched(self.snapshot) if self.snapshot else ''}"
            )
            rows = [(f"j{j.id}", j.id, render.job_cells(j)) for j in self.snapshot.jobs]  # type: ignore[union-attr]
            columns: tuple[str, ...] = render.JOB_COLUMNS
        else:
            if self.frozen:
                title.update(Text(" LIVE — frozen (f to resume)", style="bold yellow"))
                return
            self._list_title = "LIVE"
            rows = [(t.key, t.job_id, render.tail_cells(t)) for t in self.tail]
            columns = render.TAIL_COLUMNS
        selected = None if self.following else self.selected_row_key()
        if tuple(str(c.label) for c in table.columns.values()) != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        else:
            table.clear()
        self._row_jobs = {}
        for key, job_id, cells in rows:
            table.add_row(*cells, key=key)
            self._row_jobs[key] = job_id
        if selected in self._row_jobs:
            # Paused: stay on the row the user chose while newer rows arrive above it.
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        elif table.row_count:
            table.move_cursor(row=0, animate=False)
            table.scroll_to(y=0, animate=False)
        self._update_title()

    def pause_following(self) -> None:
        """The user moved in the list: keep their row under the cursor until they resume."""
        self.following = False
        self._update_title()

    def follow(self) -> None:
        """Back to the newest rows, with the cursor on the newest."""
        self.following = True
        self._render()

    def selected_row_key(self) -> str | None:
        main = self._main()
        if main is None:
            return None
        table = main.query_one("#jobs", DataTable)
        if table.row_count == 0:
            return None
        with contextlib.suppress(Exception):
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            return str(key)
        return None

    def selected_job_id(self) -> int | None:
        key = self.selected_row_key()
        return self._row_jobs.get(key) if key else None

    # -- actions ---------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_cursor(self, delta: int) -> None:
        main = self._main()
        if main is not None and self.screen is main:
            table = main.query_one("#jobs", DataTable)
            if delta > 0:
                table.action_cursor_down()
            else:
                table.action_cursor_up()

    def action_refresh(self) -> None:
        self._wake.set()

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self._render()

    def action_filter(self) -> None:
        main = self._main()
        if main is None or self.screen is not main:
            return
        main.query_one("#filterbox").add_class("shown")
        main.query_one("#filter-error", Label).update("")
        field = main.query_one("#filter", Input)
        field.value = self.options.filter.text
        field.focus()

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        try:
            compiled = parse_filter(event.value)
        except FilterError as exc:
            event.input.screen.query_one("#filter-error", Label).update(str(exc))
            return
        self.options = dataclasses.replace(self.options, filter=compiled)
        self.following = True  # a new list: start on its newest row
        event.input.screen.query_one("#filterbox").remove_class("shown")
        event.input.screen.query_one("#jobs", DataTable).focus()
        self._wake.set()

    async def action_back(self) -> None:
        main = self._main()
        if main is None or self.screen is not main:
            return
        box = main.query_one("#filterbox")
        if box.has_class("shown"):
            box.remove_class("shown")
            main.query_one("#jobs", DataTable).focus()
        elif not self.following:
            self.follow()
        elif self.options.filter.active:
            self.options = dataclasses.replace(self.options, filter=parse_filter(""))
            self._wake.set()

    @on(DataTable.RowSelected, "#jobs")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()

    @work(exclusive=True, group="detail")
    async def action_detail(self) -> None:
        job_id = self.selected_job_id()
        if job_id is None or self.screen is not self._main():
            return
        try:
            job = await self.tj.job_manager.get_job_async(job_id)
        except TracedJobsError as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(DetailScreen(render.job_detail(job, self.trace_url)))

    def action_retry(self) -> None:
        self._act("retry")

    def action_cancel(self) -> None:
        self._act("cancel")

    @work(exclusive=True, group="action")
    async def _act(self, verb: str) -> None:
        if self.read_only or self.screen is not self._main():
            return
        job_id = self.selected_job_id()
        choices: list[tuple[str, str]] = []
        lines: list[str] = []
        ids: list[int] = []
        if job_id is not None:
            choices.append(("do_s", f"Selected job #{job_id} (s)"))
            lines.append(f"{verb.capitalize()} job #{job_id}?")
        if self.options.filter.active:
            statuses = ["failed"] if verb == "retry" else ["todo"]
            try:
                ids = await self.tj.job_manager.top_matching_ids_async(
                    self.options.filter.where,
                    {**self.options.filter.params, "queue": self.options.queue,
                     "task": self.options.task},
                    statuses,
                    conn=await self._connection(),
                )
            except (psycopg.Error, OSError, TracedJobsError):
                self.notify(UNREACHABLE, severity="error")
                return
            noun = "failed" if verb == "retry" else "waiting (todo)"
            lines.append(f"{verb.capitalize()} all {len(ids)} {noun} job(s) matching "
                         f"«{self.options.filter.text}»?")
            if ids:
                choices.append(("do_a", f"All {len(ids)} matching (a)"))
        if not choices:
            self.notify("nothing selected" if not lines else lines[-1].replace("?", ": none"),
                        severity="warning")
            return
        answer = await self.push_screen_wait(ConfirmScreen("\n".join(lines), choices))
        if not answer:
            return
        manager = self.tj.job_manager
        try:
            if answer == "do_a":
                if verb == "retry":
                    done = await manager.retry_failed_jobs_async(ids)
                else:
                    done = await manager.cancel_todo_jobs_async(ids)
                self.notify(f"{verb} done for {done} of {len(ids)} job(s)")
            elif job_id is not None:
                if verb == "retry":
                    await manager.retry_job_by_id_async(job_id)
                    self.notify(f"job #{job_id} retried")
                elif await manager.cancel_job_by_id_async(job_id, abort=True):
                    self.notify(f"job #{job_id}: cancel requested")
                else:
                    self.notify(f"job #{job_id} is finished: nothing to cancel", severity="warning")
        except TracedJobsError as exc:
            self.notify(str(exc), severity="error")
        self._wake.set()
