"""The one progress-bar policy of every hiopt command: tqdm on stderr, drawn only on a terminal.

A bar redrawn into a log file or a CI transcript is hundreds of carriage-return updates; without a
terminal the commands print their result lines only.
"""
from __future__ import annotations

import sys


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """``tqdm(iterable, **kwargs)`` on stderr, disabled unless `enabled` and stderr is a terminal
    (a disabled bar still iterates and accepts update/set_postfix/close)."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, disable=not enabled or not kwargs["file"].isatty(), **kwargs)
