"""hiopt_ros.progress: every command's progress bars are drawn on a terminal only."""
from __future__ import annotations

import io
from pathlib import Path

from hiopt_ros.progress import progress_bar

REPO = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_only_and_a_disabled_bar_still_counts():
    log = io.StringIO()
    assert list(progress_bar(range(5), file=log, desc="steps")) == list(range(5))
    assert log.getvalue() == ""
    term = _Terminal()
    list(progress_bar(range(5), file=term, desc="steps"))
    assert "steps" in term.getvalue() and "5/5" in term.getvalue()
    off = _Terminal()
    bar = progress_bar(total=3, enabled=False, file=off)
    bar.update(3)
    bar.set_postfix({"a": 1})
    bar.close()
    assert off.getvalue() == ""


def test_no_command_draws_a_bar_into_a_log():
    """Every progress bar goes through hiopt_ros.progress (the one place that checks for a terminal)."""
    sources = [p for d in ("hiopt_ros", "sim", "offline", "tools") for p in (REPO / d).rglob("*.py")]
    direct = [str(p.relative_to(REPO)) for p in sources
              if p.name != "progress.py" and "tqdm(" in p.read_text()]
    assert direct == [], f"call hiopt_ros.progress.progress_bar instead of tqdm in {direct}"
