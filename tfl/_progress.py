"""Progress of long steps: a bar on a terminal, a line every few seconds in a log.

Feature and activation passes, the LR range test, checks over many files and
export verification can take minutes. On a terminal (stderr is a tty) a
Keras-style bar is redrawn in place; otherwise (a log file, a notebook, CI)
the "tfl" logger gets a line every `interval` seconds with the count, the
rate and the time left. Steps that end within the first interval print
nothing on a log, so short runs stay quiet.
"""

from __future__ import annotations

import sys
import time

from tfl._logging import log


class Progress:
    """Reports `done` of `total` units of a step.

    Args:
        what: the step, e.g. "stage 1: backbone features".
        total: units of work (0 or None: unknown).
        unit: what is counted ("images", "steps", "files").
        interval: seconds between log lines (not on a terminal).

    Examples:
        >>> with Progress("stage 1: backbone features", 3453) as bar:
        ...     for batch in batches:
        ...         bar.update(len(batch))
    """

    def __init__(self, what: str, total, unit: str = "images", interval: float = 5.0):
        self.what, self.total, self.unit, self.interval = what, int(total or 0), unit, interval
        self.done = 0
        self.start = self.last = time.monotonic()
        self.tty = _stderr_is_tty()
        self.drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.1 or self.done >= self.total > 0:
                self._draw(now)
        elif now - self.last >= self.interval:
            self.last = now
            log.info(f"{self.what}: {self._status(now)}")

    def close(self) -> None:
        if self.tty and self.drawn:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _status(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        text += f", {rate:.1f} {self.unit}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", {_duration((self.total - self.done) / rate)} left"
        return text

    def _draw(self, now: float) -> None:
        self.last = now
        width = 30
        if self.total:
            filled = int(width * min(1.0, self.done / self.total))
            bar = "=" * max(0, filled - 1) + (">" if filled < width else "=") + "." * (width - filled)
        else:
            bar = "." * width
        sys.stderr.write(f"\r[tfl] {self.what} [{bar}] {self._status(now)}\033[K")
        sys.stderr.flush()
        self.drawn = True


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
