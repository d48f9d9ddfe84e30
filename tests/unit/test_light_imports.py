"""What stays light: the modules the command line and this unit layer import load no TensorFlow, Keras or
Keras Tuner; and the filter that keeps TensorFlow's C++ start-up lines out of the command line's output."""

import json
import subprocess
import sys

import helpers
import pytest

from tfl._quiet_import import is_noise

# Modules whose docstrings promise no TensorFlow at import time (and that the unit tests import).
LIGHT = ("tfl", "tfl.cli", "tfl.config", "tfl.errors", "tfl.runs", "tfl.tuning.space", "tfl.models.backbones",
         "tfl.data.images", "tfl.data.tables", "tfl.serving.evaluation", "tfl.training.lr_finder",
         "tfl.training._discriminative", "tfl._quiet_import")
HEAVY = ("tensorflow", "keras", "keras_tuner", "tensorflow_datasets", "matplotlib")


def test_light_modules_import_no_tensorflow():
    code = (f"import importlib, json, sys\nfor m in {LIGHT!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=helpers.REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.parametrize("line,noise", [
    ("I0000 00:00:1795797752.745323   16255 port.cc:153] oneDNN custom operations are on.", True),
    ("W0000 00:00:1795797752.745323   16255 cpu_feature_guard.cc:210] This TensorFlow binary is optimized\n", True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("E0000 00:00:1795797752.745323   16255 cuda_dnn.cc:1] cannot load cuDNN", False),  # errors come through
    ("I0000 not a log line", False),
    ("Traceback (most recent call last):", False),
    ("", False),
])
def test_only_cpp_info_and_warning_lines_are_noise(line, noise):
    assert is_noise(line) is noise
