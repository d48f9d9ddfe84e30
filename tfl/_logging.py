"""tfl's log: `logging.getLogger("tfl")`, shown as `[tfl] message` lines on stderr.

tfl reports progress through the standard `logging` module, so a program
that uses tfl can silence it (`logging.getLogger("tfl").setLevel("WARNING")`),
route it, or capture it. Unless the program configured the "tfl" logger
itself, tfl adds one handler that writes `[tfl] ...` to the current
`sys.stderr` (looked up at every line, so redirections and test captures see
it) and does not pass the lines on to the root logger, where absl's handler
would print them a second time.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "tfl"


class _StderrHandler(logging.Handler):
    def emit(self, record):
        try:
            sys.stderr.write(f"[tfl] {self.format(record)}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a run (closed stderr, ...)
            self.handleError(record)


def _configure() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        logger.addHandler(_StderrHandler())
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


log = _configure()
