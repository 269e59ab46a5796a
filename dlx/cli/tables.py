"""Tables that fit a terminal's width without cutting a cell.

Rich cuts what does not fit with an ellipsis: a comparison of a sweep's runs, with a column per
swept param and per metric, showed `model…` and `0.004…` in 120 columns. `fitted_table` keeps
every cell whole instead. A table that fits is drawn boxed, as it always was; one that does
not loses its vertical rules (its columns a space apart), then the headers wrap (at `_` and
`.` first) down to the width of their column's values, and only a table that still does not
fit folds its values onto more lines, the widest column's first. Nothing is ever cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_MIN_HEADER_WIDTH = 6
"""The narrowest a header may wrap to when its values are narrower (`filter/s`, not `f/i/...`)."""
_BREAKS = re.compile(r"(?<=[_.\s])")


def fitted_table(
    title: str | None,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    width: int | None,
    left: int,
    row_styles: Sequence[str | None] | None = None,
) -> Any:
    """A rich `Table` of `rows` (text or rich `Text` cells) that fits `width` columns.

    Args:
        title: the title above it.
        header: the columns' names.
        rows: the cells, a list per row.
        width: the terminal's width; `None`: as wide as the table needs.
        left: how many columns, from the first, are justified left (the others right).
        row_styles: a style per row (`None`: the default).
    """
    from rich import box
    from rich.table import Table

    values = [max((_width(row[c]) for row in rows), default=0) for c in range(len(header))]
    wants = [max(value, len(name)) for value, name in zip(values, header, strict=True)]
    boxed = sum(wants) + 3 * len(header) + 1  # a rule and a space either side of each cell
    fixed: list[int] | None = None
    if width is None or boxed <= width:
        table = Table(title=title, title_justify="left")
    else:
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=0,
            show_edge=False,
            collapse_padding=True,
        )
        room = width - (len(header) - 1)  # a space between columns
        if sum(wants) > room:
            # Headers wrap between their words (`learning_` / `rate`) while that is enough,
            # then within them, never narrower than their values; then values fold, the
            # widest column first.
            words = [max(len(word) for word in _BREAKS.split(name)) for name in header]
            least = [min(len(name), _MIN_HEADER_WIDTH) for name in header]
            fixed = wants
            for floors in (words, least):
                floors = [max(floor, value) for floor, value in zip(floors, values, strict=True)]
                fixed = _narrowed(fixed, floors, room)
            fixed = _narrowed(fixed, [1] * len(header), room)
    for c, name in enumerate(header):
        table.add_column(
            name if fixed is None else _wrapped(name, fixed[c]),
            justify="left" if c < left else "right",
            overflow="fold",
            width=None if fixed is None else fixed[c],
        )
    styles = row_styles or [None] * len(rows)
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*row, style=style)
    return table


def _width(cell: Any) -> int:
    return len(cell) if isinstance(cell, str) else cell.cell_len


def _narrowed(wants: list[int], floors: list[int], room: int) -> list[int]:
    """`wants`, narrowed one column at a time, the widest first, to fit `room` (not below
    `floors`: as near it as they allow)."""
    widths = list(wants)
    excess = sum(widths) - room
    while excess > 0:
        narrowable = [c for c, w in enumerate(widths) if w > floors[c]]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda c: widths[c])
        widths[widest] -= 1
        excess -= 1
    return widths


def _wrapped(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken after `_`, `.` or a space where
    it can be, anywhere else where it must."""
    lines = [""]
    for piece in _BREAKS.split(name):
        if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > width:
            lines[-1] = lines[-1].rstrip()
            lines.append("")
        lines[-1] += piece
        while len(lines[-1]) > width:
            lines[-1:] = [lines[-1][:width], lines[-1][width:]]
    return "\n".join(line.rstrip() for line in lines)
