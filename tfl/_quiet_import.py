"""Keeps TensorFlow's start-up log lines out of the command line's output.

`TF_CPP_MIN_LOG_LEVEL` does not reach every line TensorFlow's C++ side
writes while it loads: on CPUs where oneDNN is on, absl prints "All log
messages before absl::InitializeLog() ..." and the oneDNN INFO line straight
to file descriptor 2, whatever the level. A command that fails after
importing TensorFlow would then print several lines instead of its one.

So the first `import tensorflow` (wherever it happens: tfl, Keras, tfds)
runs with descriptor 2 sent to a temporary file; afterwards the file is
replayed to stderr without the INFO and WARNING lines of the C++ log format.
Errors, and anything else, come through. `tfl --debug` does not install it; the CLI and the recipes do.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# "I0000 00:00:1795797752.745323   16255 port.cc:153] ..." (glog/absl format; I = info, W = warning)
_NOISE = re.compile(r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] .*)$")


def is_noise(line: str) -> bool:
    """Whether `line` is a C++ INFO/WARNING log line (or absl's pre-init notice) to drop."""
    return bool(_NOISE.match(line.rstrip("\r\n")))


@contextlib.contextmanager
def filtered_stderr():
    """Sends file descriptor 2 to a temporary file, then replays it without the noise lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                    if not is_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader's `exec_module` inside `filtered_stderr`; delegates everything else."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        uninstall()  # once: find the real spec with the other finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_finder = _QuietTensorFlowFinder()


def install() -> None:
    """Filters the log lines of the first `import tensorflow` of this process (no-op once imported)."""
    if "tensorflow" not in sys.modules and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up lines (absl, oneDNN, cpu_feature_guard) in this process.

    Call it before TensorFlow is imported (`import tfl` does not import it):
    sets `TF_CPP_MIN_LOG_LEVEL`/`ABSL_MIN_LOG_LEVEL` to 2 unless set, and
    filters the lines those variables miss from the first `import tensorflow`.
    Errors and Python output still come through.

    Examples:
        >>> import tfl
        >>> tfl.quiet_tensorflow()
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    install()
