"""Tables fitted to the terminal: columns dropped by importance, ids and times never cut."""

from __future__ import annotations

import io

from rich.console import Console

from tracedjobs.tui.fit import Column, fit_columns, fitted_table


def columns() -> list[Column]:
    return [
        Column("id", ["48211", "7"], keep=True),
        Column("task", ["myapp.tasks.send_email", "myapp.reports.build"], rank=1,
               short=["send_email", "build"], min_width=8),
        Column("queue", ["emails", "reports"], rank=3),
        Column("error", ["ValueError: card declined for order 48211", ""], rank=2,
               min_width=12),
        Column("trace", ["4bf92f35", ""], rank=4),
        Column("at", ["2026-11-30 12:04:31", "2026-11-30 12:04:30"], keep=True),
    ]


def render(width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(fitted_table(columns(), width))
    return out.getvalue().splitlines()


def test_everything_fits_on_a_wide_terminal() -> None:
    shown = fit_columns(columns(), 200)
    assert [c.header for c in shown] == ["id", "task", "queue", "error", "trace", "at"]
    assert shown[1].cells[0] == "myapp.tasks.send_email"


def test_narrower_short_names_then_cut_text_then_dropped_columns() -> None:
    at_100 = fit_columns(columns(), 100)
    assert [c.header for c in at_100] == ["id", "task", "queue", "error", "trace", "at"]
    assert at_100[1].cells[0] == "send_email"  # short names before anything else
    at_60 = fit_columns(columns(), 60)
    assert "trace" not in [c.header for c in at_60]  # the least important goes first
    assert [c.header for c in fit_columns(columns(), 30)] == ["id", "at"]


def test_ids_and_times_stay_whole_at_every_width() -> None:
    for width in (40, 60, 80, 100, 120):
        lines = render(width)
        assert all(len(line) <= max(width, 28) for line in lines), (width, lines)
        text = "\n".join(lines)
        assert "48211" in text and "2026-11-30 12:04:31" in text, (width, text)
        assert len(lines) == 3  # header and two rows: nothing wrapped onto a second line
