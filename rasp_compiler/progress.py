"""Progress of long work on a terminal: the compile's stages, with a bar where a stage
counts (MLP tables).

Nothing is shown for the first ``delay`` seconds (a quick compile stays silent), nor when
the stream is not a terminal or the user asked for quiet; after that one status line is
rewritten in place and cleared at the end, so no output is interleaved with it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: what the compiler calls: (stage, done, total); total 0 when the stage does not count
ProgressFn = Callable[[str, int, int], None]

BAR_WIDTH = 24


def _env_delay() -> float:
    try:
        return max(0.0, float(os.environ.get("RASP_COMPILER_PROGRESS_DELAY", "1")))
    except ValueError:
        return 1.0


class Progress:
    """A status line for :data:`ProgressFn` callbacks (see the module docstring)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        delay: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "compiling",
    ):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = isatty() if enabled is None else enabled
        # RASP_COMPILER_PROGRESS_DELAY sets the silent start (seconds; tests use 0)
        self.delay = delay if delay is not None else _env_delay()
        self.clock = clock
        self.label = label
        self.started = clock()
        self.shown = False

    def __call__(self, stage: str, done: int = 0, total: int = 0) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.started
        if elapsed < self.delay:
            return
        line = f"{self.label}: {stage}"
        if total > 0:
            filled = BAR_WIDTH * min(done, total) // total
            line += f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
        line += f" ({elapsed:.0f} s)"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """Clear the status line (if one was shown)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
