"""The per-batch progress bar of one run (tqdm on stderr); silent when stderr is not a terminal."""
from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    """``update(done, **fields)`` moves the bar to ``done`` images and shows the fields; ``close()`` clears it."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool | None = None) -> None:
        stream = stream or sys.stderr
        enabled = stream.isatty() if enabled is None else enabled
        self._bar = tqdm(total=total, desc=label, unit="img", file=stream, disable=not enabled,
                         leave=False, dynamic_ncols=True, mininterval=0.1)

    def update(self, done: int, **fields) -> None:
        if self._bar.disable:
            return
        self._bar.set_postfix(fields, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
