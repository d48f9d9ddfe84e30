"""Shared fixtures: the real data in ../shared, a KERAS_HOME with real weights,
and one trained run that many tests reuse. Helper functions (`run_tfl`, ...) are in helpers.py.

KERAS_HOME must be set before Keras is imported, so it is set here, at
import time of the test session, on a temporary copy of
../shared/keras-weights (Keras writes keras.json into it; ../shared is
read-only).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

# fill_disk, run_tfl and small_disk are not used here: they stay importable from conftest only until
# test_tuning.py and test_distributed.py import them from helpers, as the other test modules do.
from helpers import BENCHMARKS, REPO, SHARED, fill_disk, run_tfl, small_disk  # noqa: F401

if not os.path.isdir(SHARED):
    raise RuntimeError(f"the tests need the shared data folder beside the repo: {SHARED} is missing "
                       "(or set TFL_SHARED)")

_KERAS_HOME = tempfile.mkdtemp(prefix="tfl-keras-home-")
shutil.copytree(os.path.join(SHARED, "keras-weights"), _KERAS_HOME, dirs_exist_ok=True)
os.environ["KERAS_HOME"] = _KERAS_HOME
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `from keras_guide import keras_guide_recipe` (test_defaults.py); appended, so it shadows nothing installed.
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)


@pytest.fixture(scope="session")
def shared_dir():
    """The read-only ../shared folder."""
    return SHARED


@pytest.fixture(scope="session")
def hymenoptera(shared_dir):
    """Path of the ants/bees dataset (train/ and val/ class folders)."""
    return os.path.join(shared_dir, "datasets", "hymenoptera_data")


@pytest.fixture(scope="session")
def trashnet(shared_dir):
    """Path of the 6-class trashnet subset."""
    return os.path.join(shared_dir, "datasets", "trashnet_subset")


@pytest.fixture(scope="session")
def keras_home():
    """KERAS_HOME holding the real MobileNet 0.25 ImageNet weights."""
    return _KERAS_HOME


@pytest.fixture(scope="session")
def mobilenet_weights(keras_home):
    """Path of the real mobilenet_025 no-top weights file."""
    return os.path.join(keras_home, "models", "mobilenet_2_5_224_tf_no_top.h5")


# The Keras guide's recipe at tfl's default epochs takes minutes per dataset. It runs in a background
# process from the end of collection (niced, on the CPU time the suite leaves idle), and the tests that
# compare against it run last.
# (dataset, backbone): one row of each real-weights family (benchmarks/defaults_matrix.py has them all).
_GUIDE_CELLS = (("hymenoptera_data", "mobilenet_025"), ("trashnet_subset", "mobilenet_025"),
                ("rsscn7_subset", "mobilenet_v2_035"))
_guide = {}


def pytest_collection_modifyitems(config, items):
    waiting = [item for item in items if "keras_guide_baseline" in getattr(item, "fixturenames", ())]
    items[:] = [item for item in items if item not in waiting] + waiting


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if not any("keras_guide_baseline" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    folder = tempfile.mkdtemp(prefix="tfl-keras-guide-")
    log = open(os.path.join(folder, "log.txt"), "w")
    datasets = [f"{os.path.join(SHARED, 'datasets', name)}@{backbone}" for name, backbone in _GUIDE_CELLS]
    _guide["folder"] = folder
    # The script imports keras_guide from benchmarks/.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), BENCHMARKS) if p)}
    _guide["proc"] = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "_keras_guide_baseline.py"), folder, *datasets],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, preexec_fn=lambda: os.nice(10))


def pytest_sessionfinish(session, exitstatus):
    proc = _guide.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def keras_guide_baseline():
    """`get(dataset, backbone)`: the Keras guide recipe's result at tfl's default epochs (224 px)."""
    def get(dataset, backbone="mobilenet_025", timeout=3600):
        assert (dataset, backbone) in _GUIDE_CELLS and "proc" in _guide, "the background baseline was not started"
        path = os.path.join(_guide["folder"], f"{dataset}@{backbone}.json")
        deadline = time.time() + timeout
        while not os.path.exists(path):
            if _guide["proc"].poll() is not None or time.time() > deadline:
                with open(os.path.join(_guide["folder"], "log.txt")) as f:
                    log = f.read()[-3000:]
                raise AssertionError(f"the Keras guide baseline for {dataset} did not finish:\n{log}")
            time.sleep(1)
        with open(path) as f:
            return json.load(f)

    return get


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, hymenoptera):
    """A real two-stage run on hymenoptera with mobilenet_025 + ImageNet weights (trained once per session)."""
    from tfl.config import TrainConfig
    from tfl.training.trainer import Trainer

    out = str(tmp_path_factory.mktemp("runs") / "hymenoptera")
    cfg = TrainConfig()
    cfg.data.source = f"folder:{hymenoptera}"
    # The suite's reference run (reused by many tests, and the guide's hymenoptera row in test_defaults.py)
    # stays on the smallest backbone; the default backbone has its own rows.
    cfg.model.backbone = "mobilenet_025"
    cfg.model.image_size = 224
    result = Trainer(cfg, out, verbose=0).fit()
    return result
