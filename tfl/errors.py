"""Errors that tfl reports as one line instead of a traceback.

Every expected failure is a `TflError`: `UsageError` means the user asked for
something that cannot work (exit 2); any other `TflError` is an expected
failure of the run (exit 1). The CLI matches these classes, nothing else.
"""


class TflError(Exception):
    """An expected failure, reported as one line (exit status 1)."""


class UsageError(TflError, ValueError):
    """A bad option or bad input, reported as one line (exit status 2)."""


class UnknownBackboneError(UsageError):
    """A backbone name that is not in the registry (the message suggests close names)."""


class ImageSizeError(UsageError):
    """An image size the backbone cannot take (below its minimum)."""


class WeightsUnavailableError(TflError, RuntimeError):
    """ImageNet weights that are neither cached nor downloadable (the message says where to put the file)."""


# How the user spells an option in the messages: `--overwrite` on the command line, `overwrite=True` in
# Python. The CLI switches this on for its process (`use_cli_names`); the Python API is the default.
_CLI_NAMES = False


def use_cli_names(on: bool = True) -> None:
    """Messages name command-line flags (`--resume RUN`) instead of keyword arguments (`resume=True`)."""
    global _CLI_NAMES
    _CLI_NAMES = on


def flag(cli: str, python: str) -> str:
    """`cli` (e.g. `--overwrite`) under the command line, else `python` (e.g. `overwrite=True`).

    Examples:
        >>> flag("--overwrite", "overwrite=True")
        'overwrite=True'
    """
    return cli if _CLI_NAMES else python


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; the message says how to continue it (the CLI exits 130).

    A `KeyboardInterrupt`, not a `TflError`: an interruption is no failure, and
    the `except Exception` blocks of Keras or of a report must never swallow it.
    """
