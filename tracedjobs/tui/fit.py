"""Tables that fit the terminal: drop the least important columns rather than cut ids or times.

Rich shrinks every column of a table that is too wide, which turns ``#48211`` into ``#4…``
and splits dates over two lines. Here each column says how much it matters; a table too
wide for the terminal first uses shorter cells where a column has them (short task
names), then cuts free-text columns down to their minimum, then drops whole columns,
least important first. Columns marked ``keep`` are never cut nor dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

# Rich's padding (0, 1) without edges: two spaces between columns, none outside.
GAP = 2


@dataclasses.dataclass(eq=False)
class Column:
    header: str
    cells: list[Any]
    # Lower is more important; columns are dropped from the highest rank down.
    rank: int = 0
    keep: bool = False
    # Shorter cells, tried before anything is cut or dropped (e.g. short task names).
    short: list[Any] | None = None
    # Free text may be cut to this width with an ellipsis; None: never cut.
    min_width: int | None = None
    justify: str = "left"
    width: int = 0


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _natural(header: str, cells: Sequence[Any]) -> int:
    return max([cell_len(header), *(cell_len(_plain(c)) for c in cells)])


def _total(columns: list[Column]) -> int:
    return sum(c.width for c in columns) + GAP * max(len(columns) - 1, 0)


def _minimum(column: Column) -> int:
    if column.min_width is None or column.keep:
        return column.width
    return min(column.width, max(column.min_width, cell_len(column.header)))


def fit_columns(columns: list[Column], width: int) -> list[Column]:
    """The columns to show and their widths, so the table is at most ``width`` wide.

    In order: natural widths; shorter cells, least important column first; free text cut to
    its minimum and, if that is not enough, whole columns dropped, least important first;
    then what room is left goes back to the cut columns, most important first.
    """
    shown = [dataclasses.replace(c) for c in columns]
    for column in shown:
        column.width = _natural(column.header, column.cells)
    least_first = sorted(shown, key=lambda c: -c.rank)
    for column in least_first:
        if _total(shown) <= width:
            return shown
        if column.short is not None:
            column.cells = column.short
            column.width = _natural(column.header, column.cells)
    if _total(shown) <= width:
        return shown
    natural = {id(c): c.width for c in shown}
    for column in shown:
        column.width = _minimum(column)
    for column in least_first:
        if _total(shown) <= width:
            break
        if not column.keep:
            shown.remove(column)
    room = width - _total(shown)
    for column in reversed(least_first):
        if room <= 0:
            break
        if column in shown and column.width < natural[id(column)]:
            grow = min(room, natural[id(column)] - column.width)
            column.width += grow
            room -= grow
    return shown


def fitted_table(columns: list[Column], width: int, **table_options: Any) -> Table:
    """A rich table of the columns that fit in ``width``; cells never wrap."""
    shown = fit_columns(columns, width)
    options: dict[str, Any] = {
        "box": None, "padding": (0, 1), "pad_edge": False, "show_edge": False,
        "header_style": "bold", "expand": False, **table_options,
    }
    table = Table(**options)
    for column in shown:
        table.add_column(
            column.header, justify=column.justify,  # type: ignore[arg-type]
            no_wrap=True, overflow="ellipsis", min_width=column.width, max_width=column.width,
        )
    rows = max((len(c.cells) for c in shown), default=0)
    for i in range(rows):
        table.add_row(*(c.cells[i] for c in shown))
    return table
