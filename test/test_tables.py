"""The one Markdown table writer (hiopt_ros.tables) every report uses."""
import pytest

from hiopt_ros.tables import Column, markdown_table


def _cells(line: str) -> list[str]:
    """The cells of a table line, split at the pipes that are not escaped."""
    parts, cell, i = [], "", 0
    body = line.strip()[1:-1]
    while i < len(body):
        if body[i] == "\\" and body[i + 1:i + 2] == "|":
            cell, i = cell + "\\|", i + 2
        elif body[i] == "|":
            parts, cell, i = parts + [cell], "", i + 1
        else:
            cell, i = cell + body[i], i + 1
    return [c.strip() for c in parts + [cell]]


def test_header_alignment_row_and_rows():
    md = markdown_table([Column("step"), Column("median [ms]", "right"), Column("n", "right")],
                        [["MPC", "2.05", 5], ["lower level", "0.31", 200]])
    assert md.splitlines() == ["| step | median [ms] | n |",
                               "|---|---:|---:|",
                               "| MPC | 2.05 | 5 |",
                               "| lower level | 0.31 | 200 |"]
    assert not md.endswith("\n")


def test_no_rows_is_header_and_alignment_only():
    assert markdown_table([Column("a", "right")], []) == "| a |\n|---:|"


def test_a_pipe_or_newline_in_a_cell_does_not_split_the_table():
    md = markdown_table([Column("max |Δu|"), Column("status")], [["1e-3", "failed:\nsolver | status 4"]])
    lines = md.splitlines()
    assert len(lines) == 3
    header, rule, row = (_cells(line) for line in lines)
    assert len(header) == len(rule) == len(row) == 2
    assert header[0] == "max \\|Δu\\|" and row[1] == "failed:<br>solver \\| status 4"


def test_a_row_with_the_wrong_number_of_cells_names_the_counts():
    with pytest.raises(ValueError, match=r"row 1 has 3 cells but there are 2 columns \(a, b\)"):
        markdown_table([Column("a"), Column("b")], [["1", "2"], ["1", "2", "3"]])
    with pytest.raises(ValueError, match=r"row 0 has 1 cells but there are 2 columns"):
        markdown_table([Column("a"), Column("b")], [["1"]])


def test_bad_alignment_and_no_columns_are_clear_errors():
    with pytest.raises(ValueError, match=r"Column 'a': align must be 'left' or 'right', got 'centre'"):
        Column("a", "centre")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table([], [])
