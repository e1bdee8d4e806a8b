"""A one-line progress bar on stderr that stays quiet when stderr is not a terminal."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """``update(done, **fields)`` redraws at most 10 times a second; ``close()`` clears it."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool | None = None) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._start = time.perf_counter()

    def update(self, done: int, **fields) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        width = 24
        filled = int(width * done / max(self.total, 1))
        rate = done / max(now - self._start, 1e-9)
        extra = "  ".join(f"{k} {v}" for k, v in fields.items())
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{done}/{self.total} {rate:.0f}/s  {extra}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
