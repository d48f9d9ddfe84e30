"""Ctrl-C and SIGTERM: the run stops at once, but never half-way through writing its state.

The command line calls `install()`: from then on SIGINT and SIGTERM both raise
`KeyboardInterrupt` in the main thread (SIGTERM would otherwise kill the
process on the spot, skipping every cleanup). Code that writes state a resume
depends on (a checkpoint and the `state.json` that commits it, the final
model) runs inside `protected()`: a signal that arrives there is held until
the block ends, then raised. So an interrupted run always stops between whole
writes, and `--resume` continues from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_state = {"depth": 0, "pending": None}


def _handler(signum, frame):
    name = signal.Signals(signum).name
    if _state["depth"]:
        _state["pending"] = name
        return
    raise KeyboardInterrupt(name)


def install():
    """Makes SIGINT and SIGTERM raise `KeyboardInterrupt` (main thread only; elsewhere a no-op).

    Returns:
        A function that puts the previous handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore():
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


@contextlib.contextmanager
def protected():
    """A block that a signal must not cut: one that arrives inside is raised when the block ends.

    Examples:
        >>> with protected():
        ...     write_checkpoint(); commit_state()
    """
    _state["depth"] += 1
    finished = False
    try:
        yield
        finished = True
    finally:
        _state["depth"] -= 1
        if not _state["depth"]:
            name, _state["pending"] = _state["pending"], None
            if name and finished:  # else an error is on its way out already: it stops the run
                raise KeyboardInterrupt(name)


def signal_name(e: BaseException) -> str:
    """How a `KeyboardInterrupt` came: `SIGTERM`, or `Ctrl-C` (SIGINT, also Python's own handler's)."""
    text = str(e)
    return "SIGTERM" if text == "SIGTERM" else "Ctrl-C"
