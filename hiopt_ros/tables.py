"""Markdown tables for reports: one writer for every benchmark, soak and results table.

    print(markdown_table([Column("rate [Hz]", "right"), Column("missed [%]", "right")],
                         [["50", "0.00"], ["500", "0.24"]]))

    | rate [Hz] | missed [%] |
    |---:|---:|
    | 50 | 0.00 |
    | 500 | 0.24 |

Callers format their numbers (each table has its own units and precision); this module owns the
layout: header row, alignment row, one line per row, and cells that cannot break the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

__all__ = ["Column", "markdown_table"]

Align = Literal["left", "right"]
# "left" is written `---`, Markdown's unmarked default, which every renderer shows left-aligned
_RULE: dict[str, str] = {"left": "---", "right": "---:"}


@dataclass(frozen=True)
class Column:
    """One column: its header text and its alignment ("right" for numbers)."""

    header: str
    align: Align = "left"

    def __post_init__(self) -> None:
        if self.align not in _RULE:
            raise ValueError(f"Column {self.header!r}: align must be 'left' or 'right', got {self.align!r}")


def _cell(value: object) -> str:
    # a bare `|` would end the cell and shift every later column; a newline would end the row
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def markdown_table(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> str:
    """The table as Markdown lines joined by "\\n", without a trailing newline.

    ``columns``: the header and alignment of each of the C columns. ``rows``: each a sequence of
    exactly C cells, already formatted (anything else is written with ``str``). A ``|`` in a cell
    or a header is escaped and a newline becomes ``<br>``, so a cell never splits the table.
    Raises ValueError for no columns or a row whose cell count is not C.
    """
    if not columns:
        raise ValueError("markdown_table: needs at least one column")
    lines = ["| " + " | ".join(_cell(c.header) for c in columns) + " |",
             "|" + "".join(_RULE[c.align] + "|" for c in columns)]
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells but there are {len(columns)} "
                             f"columns ({', '.join(c.header for c in columns)}): {list(row)!r}")
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)
