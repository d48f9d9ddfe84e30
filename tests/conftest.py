"""Shared fixtures: the real data in ../shared, a KERAS_HOME with real weights,
and one trained run that many tests reuse.

KERAS_HOME must be set before Keras is imported, so it is set here, at
import time of the test session, on a temporary copy of
../shared/keras-weights (Keras writes keras.json into it; ../shared is
read-only).
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.environ.get("TFL_SHARED", os.path.join(REPO, "..", "shared")))

if not os.path.isdir(SHARED):
    raise RuntimeError(f"the tests need the shared data folder beside the repo: {SHARED} is missing "
                       "(or set TFL_SHARED)")

_KERAS_HOME = tempfile.mkdtemp(prefix="tfl-keras-home-")
shutil.copytree(os.path.join(SHARED, "keras-weights"), _KERAS_HOME, dirs_exist_ok=True)
os.environ["KERAS_HOME"] = _KERAS_HOME
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
_GUIDE_DATASETS = ("hymenoptera_data", "trashnet_subset")
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
    datasets = [os.path.join(SHARED, "datasets", name) for name in _GUIDE_DATASETS]
    _guide["folder"] = folder
    _guide["proc"] = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "_keras_guide_baseline.py"), folder, *datasets],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=lambda: os.nice(10))


def pytest_sessionfinish(session, exitstatus):
    proc = _guide.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def keras_guide_baseline():
    """`get(dataset)`: the Keras guide recipe's result on a shared dataset at tfl's default epochs."""
    def get(dataset, timeout=3600):
        assert dataset in _GUIDE_DATASETS and "proc" in _guide, "the background baseline was not started"
        path = os.path.join(_guide["folder"], f"{dataset}.json")
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


@contextlib.contextmanager
def small_disk(path, size):
    """A real tmpfs of `size` (e.g. "64m") mounted at `path`; skips the test where mounting is not allowed."""
    os.makedirs(path)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {proc.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(disk, leave):
    """Fills the file system of `disk` until `leave` bytes are free."""
    left = shutil.disk_usage(disk).free - leave
    with open(os.path.join(disk, "ballast"), "wb") as f:  # written, not sparse: tmpfs counts written pages
        while left > 0:
            left -= f.write(bytes(min(left, 1 << 20)))


def run_tfl(*args, check=True, timeout=900, env=None, cwd=None):
    """Runs the real `tfl` command line in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "tfl", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tfl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, hymenoptera):
    """A real two-stage run on hymenoptera with mobilenet_025 + ImageNet weights (trained once per session)."""
    from tfl.config import TrainConfig
    from tfl.training.trainer import Trainer

    out = str(tmp_path_factory.mktemp("runs") / "hymenoptera")
    cfg = TrainConfig()
    cfg.data.source = f"folder:{hymenoptera}"
    cfg.model.image_size = 224
    result = Trainer(cfg, out, verbose=0).fit()
    return result
