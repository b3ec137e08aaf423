"""Progress of long command-line work (`ledger verify`, `ledger project --once`, `ledger
stats`), on stderr so stdout stays the answer.

On a terminal: one line, redrawn in place, at most every ``PROGRESS_REFRESH_S``, finished
with a newline. Otherwise (a log file, a pipe, CI): a plain line each time the work passes a
multiple of ``every_events`` log positions, the step widened so that one run prints at most
``PROGRESS_LINES_MAX`` lines however long the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

PROGRESS_LINES_MAX = 100  # plain lines one run prints at most
PROGRESS_REFRESH_S = 0.1  # a terminal's line is redrawn at most this often
_ERASE_TO_END = "\x1b[K"


class Progress:
    """``progress(position, target)`` after each batch; ``done()`` at the end."""

    def __init__(self, what: str, every_events: int, stream: TextIO | None = None) -> None:
        self.what = what
        self.every_events = max(1, every_events)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0  # the position last reported (plain lines)
        self._drawn_at: float | None = None  # when the terminal line was last drawn

    def _text(self, position: int, target: int) -> str:
        percent = position * 100 // target if target else 100
        return f"{self.what}: log position {position} of {target} ({percent}%)"

    def __call__(self, position: int, target: int) -> None:
        target = max(target, position)
        if self.tty:
            now = time.monotonic()
            if (self._drawn_at is not None and position < target
                    and now - self._drawn_at < PROGRESS_REFRESH_S):
                return
            self._drawn_at = now
            self.stream.write(f"\r{self._text(position, target)}{_ERASE_TO_END}")
            self.stream.flush()
            return
        step = max(self.every_events, -(-target // PROGRESS_LINES_MAX))
        if position // step > self._last // step:
            print(self._text(position, target), file=self.stream, flush=True)
        self._last = position

    def done(self) -> None:
        """End the terminal's line, if one was drawn."""
        if self.tty and self._drawn_at is not None:
            self.stream.write("\n")
            self.stream.flush()
