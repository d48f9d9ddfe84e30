"""The `tfl` command line: thin click commands over the Python API.

Each command module registers its commands on `main`. TensorFlow is imported
only inside commands, so `tfl --help` answers at once.
"""

from tfl.cli import backbones, check, export, lr_find, report, train, tune  # noqa: F401,E402 (register commands)
from tfl.cli._common import main

__all__ = ["main"]
