"""Helpers shared by the test modules (`from helpers import run_tfl`); fixtures stay in conftest.py.

Nothing here imports TensorFlow, and importing this module has no side effect: conftest.py is what checks
for ../shared and sets KERAS_HOME for the session.
"""

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.environ.get("TFL_SHARED", os.path.join(REPO, "..", "shared")))
# benchmarks/keras_guide.py, the Keras guide's recipe that test_defaults.py compares with, is not in the package.
BENCHMARKS = os.path.join(REPO, "benchmarks")


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


def small_copy(src, dst, per_class=12, per_class_val=None):
    """A smaller copy of a `train/` + `val/` class-folder dataset (../shared is read-only); returns `dst`.

    The first `per_class` files (sorted) of each training class and `per_class_val` (default: the same)
    of each validation class, so every test that asks for the same sizes gets the same images.
    """
    for split, n in (("train", per_class), ("val", per_class if per_class_val is None else per_class_val)):
        for cls in sorted(os.listdir(os.path.join(src, split))):
            os.makedirs(os.path.join(dst, split, cls))
            for name in sorted(os.listdir(os.path.join(src, split, cls)))[:n]:
                shutil.copy(os.path.join(src, split, cls, name), os.path.join(dst, split, cls, name))
    return str(dst)
