"""Bad options: one line on stderr, exit 2, before any heavy work.

Each command runs in a subprocess through a probe that reports, after the
command has finished, whether TensorFlow was imported: the checks that need
no model must answer before TensorFlow is even loaded.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest
from helpers import REPO

_PROBE = """
import sys
from tfl.cli import main
try:
    main(sys.argv[1:], prog_name="tfl")
finally:
    print("probe: tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
"""
FAST = 10  # seconds: Python, click and tfl's light modules, on a loaded 2-core machine


def tfl_error(*args, env=None):
    """Runs `tfl ARGS`; returns (the one error line, whether TF was imported, seconds)."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=300)
    seconds = time.monotonic() - start
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("probe: ")]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("tfl: error: "), proc.stderr
    return lines[0], "tensorflow imported: True" in proc.stderr, seconds


@pytest.fixture(scope="module")
def data(tmp_path_factory, hymenoptera):
    root = tmp_path_factory.mktemp("tiny")
    for cls in ("ants", "bees"):
        for split in ("train", "val"):
            os.makedirs(root / split / cls)
            name = sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[0]
            shutil.copy(os.path.join(hymenoptera, split, cls, name), root / split / cls)
    return f"folder:{root}"


CASES = {
    "unknown backbone": (["--backbone", "mobilenet_25"], None, "did you mean: mobilenet_025"),
    "image size below the minimum": (["--backbone", "xception", "--image-size", "64"], None,
                                     "--image-size 64 is below xception's minimum of 71"),
    "image size out of range": (["--image-size", "5"], None, "Invalid value for '--image-size'"),
    "lr range the wrong way round": (["--fine-tune-lr", "1e-3..1e-5"], None, "--fine-tune-lr"),
    "malformed TF_CONFIG": (["--strategy", "multiworker"], {"TF_CONFIG": '{"cluster": {"worker": ["h:1"]'},
                            "TF_CONFIG is malformed"),
    "TF_CONFIG task out of range": (["--strategy", "multiworker"],
                                    {"TF_CONFIG": '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", '
                                                  '"index": 2}}'}, "task index 2 is out of range"),
    "missing data folder": (["--data", "folder:/no/such/folder"], None, "no such folder"),
    "missing csv file": (["--data", "csv:/no/such/labels.csv"], None, "--data csv:/no/such/labels.csv: no such file"),
    "empty label delimiter": (["--label-delimiter", ""], None, "--label-delimiter ''"),
    "multi-label monitor without --multi-label": (["--config", "MONITOR"], None,
                                                  "val_map scores multi-label models: train with --multi-label"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_option_errors_are_one_line_before_tensorflow(case, data, tmp_path):
    args, env, expected = CASES[case]
    if "MONITOR" in args:  # a config.json that monitors a multi-label metric (tfl tune sets it from --objective)
        from tfl.config import TrainConfig

        (tmp_path / "config.json").write_text(TrainConfig(monitor="val_map").to_json())
        args = [str(tmp_path / "config.json") if a == "MONITOR" else a for a in args]
    out = tmp_path / "run"
    line, tf_imported, seconds = tfl_error("train", "--data", data, "--out", str(out), *args, env=env)
    assert expected in line
    assert not tf_imported and seconds < FAST
    assert not out.exists()


def test_lr_ranges_the_wrong_way_round_in_every_command(data, tmp_path):
    for args, option in ((["lr-find", "--min-lr", "1", "--max-lr", "1e-5"], "--min-lr"),
                         (["tune", "--search", "lr=1e-2..1e-4:log", "--out", str(tmp_path / "s")], "--search lr")):
        line, tf_imported, seconds = tfl_error(*args[:1], "--data", data, *args[1:])
        assert option in line and not tf_imported and seconds < FAST, line


def test_run_folder_errors(data, tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.json").write_text("{}")
    line, tf_imported, _ = tfl_error("train", "--data", data, "--out", str(earlier))
    assert f"run folder {earlier} already exists: pass --resume {earlier}" in line and "--overwrite" in line
    assert not tf_imported and (earlier / "config.json").read_text() == "{}"

    empty = tmp_path / "empty"
    empty.mkdir()
    line, _, _ = tfl_error("train", "--resume", str(empty))
    assert f"nothing to resume in {empty}" in line

    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    line, tf_imported, seconds = tfl_error("train", "--data", data, "--out", str(a_file / "run"))
    assert f"cannot write the run folder {a_file / 'run'}" in line and "choose another --out" in line
    assert not tf_imported and seconds < FAST


def test_read_only_output_folder(data, tmp_path):
    """Permission bits do not stop root: a read-only mount does."""
    mount = tmp_path / "ro"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {proc.stderr.decode().strip()}")
    try:
        line, tf_imported, seconds = tfl_error("train", "--data", data, "--out", str(mount / "run"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert "is not writable (Read-only file system)" in line and not tf_imported and seconds < FAST


def test_unfreezing_more_than_the_backbone_has_fails_before_reading_data(data, tmp_path):
    """The layer count needs the backbone built (without weights): TensorFlow, but no data and no run folder."""
    out = tmp_path / "run"
    line, _, seconds = tfl_error("train", "--data", data, "--unfreeze", "500", "--out", str(out))
    # The default backbone, MobileNetV2 0.35, has 154 layers.
    assert "--unfreeze 500: the backbone has 154 layers; use 0..154 or 'all'" in line, line
    assert not out.exists() and seconds < 120


_QUIET_PROBE = r"""
import os, sys
from tfl import _quiet_import
with _quiet_import.filtered_stderr():
    os.write(2, b"I0000 00:00:1795797752.745323   16255 port.cc:153] oneDNN custom operations are on.\n")
    os.write(2, b"E0000 00:00:1795797752.745323   16255 cuda.cc:1] a real error\n")
    print("a Python warning", file=sys.stderr)
_quiet_import.install()
import tensorflow as tf
assert _quiet_import._finder not in sys.meta_path  # once: later imports are untouched
print(tf.constant(2).numpy() * 21, tf.__spec__.loader.is_package("tensorflow"))
"""


def test_tensorflow_start_up_log_lines_are_dropped_and_everything_else_kept():
    """The lines TF_CPP_MIN_LOG_LEVEL misses (absl's pre-init notice, oneDNN's INFO line) never reach the
    user; errors and Python's own output do, in order, and TensorFlow imports and works as usual."""
    proc = subprocess.run([sys.executable, "-c", _QUIET_PROBE], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["42", "True"]
    # Exactly the kept lines of the probe first; after them, whatever this machine's TensorFlow prints at
    # import except its start-up noise (on some CPUs four lines of it).
    lines = proc.stderr.splitlines()
    assert lines[:2] == ["E0000 00:00:1795797752.745323   16255 cuda.cc:1] a real error", "a Python warning"]
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr
