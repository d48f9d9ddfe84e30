"""The `tfl` command line: thin click commands over the Python API.

Each command module registers its commands on `main`. TensorFlow is imported
only inside commands, so `tfl --help` answers at once.
"""

from tfl.cli import backbones, check, export, lr_find, pick, report, train, tune  # noqa: F401,E402 (register commands)
from tfl.cli._common import is_usage, main, one_line, quiet_tf  # noqa: F401 (public: recipes use them)

__all__ = ["main"]
