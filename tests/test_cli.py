"""The `tfl` command line, run for real in subprocesses."""

import json
import os
import subprocess
import sys
import time

from helpers import REPO, run_tfl


def test_help_is_fast_and_does_not_import_tensorflow():
    code = "import sys, tfl.cli; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    t = time.time()
    out = run_tfl("--help").stdout
    assert time.time() - t < 5
    for command in ("train", "evaluate", "predict", "info", "backbones"):
        assert command in out


def test_backbones_lists_at_least_30():
    out = run_tfl("backbones").stdout
    lines = [line for line in out.splitlines() if line.startswith(("mobilenet", "efficientnet", "resnet"))]
    assert len(out.strip().splitlines()) >= 32
    assert any(line.startswith("mobilenet_025 ") and "local" in line for line in lines)
    rows = json.loads(run_tfl("backbones", "--json").stdout)
    assert len(rows) >= 30 and {"name", "params", "default_size", "blocks", "imagenet_local"} <= set(rows[0])


def test_train_predict_evaluate_info_on_tfds_data(tmp_path):
    data_dir = str(tmp_path / "tfds")
    run = str(tmp_path / "run")
    proc = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--data-dir", data_dir, "--weights", "none",
                   "--image-size", "32", "--epochs", "2", "--fine-tune-epochs", "1", "--out", run)
    assert "stage 1: val_accuracy" in proc.stdout and f"run folder: {run}" in proc.stdout
    assert os.path.exists(os.path.join(run, "model.keras"))
    info = json.loads(run_tfl("info", run, "--json").stdout)
    assert info["class_names"] == ["circle", "square", "triangle", "star"]
    assert info["state"]["finished"] is True
    again = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--out", run, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_predict_and_evaluate_a_real_run(trained_run, hymenoptera):
    val_bee = os.path.join(hymenoptera, "val", "bees")
    image = os.path.join(val_bee, sorted(os.listdir(val_bee))[0])
    out = run_tfl("predict", trained_run.run_dir, image).stdout.strip().split("\t")
    assert out[0] == image and out[1] in ("ants", "bees") and 0.5 <= float(out[2]) <= 1.0
    results = json.loads(run_tfl("predict", trained_run.run_dir, os.path.join(hymenoptera, "val"), "--json").stdout)
    assert len(results) == 153 and {"path", "label", "probability"} <= set(results[0])
    correct = sum(r["label"] == os.path.basename(os.path.dirname(r["path"])) for r in results)
    metrics = json.loads(run_tfl("evaluate", trained_run.run_dir, "--json").stdout)
    assert metrics["num_images"] == 153
    assert abs(metrics["accuracy"] - correct / 153) < 1e-9
    assert abs(metrics["accuracy"] - trained_run.val_accuracy) < 0.01
    assert sum(map(sum, metrics["confusion_matrix"])) == 153
    text = run_tfl("evaluate", trained_run.run_dir).stdout
    assert "confusion matrix" in text and "precision" in text


def test_errors_are_one_line_with_exit_codes(tmp_path):
    bad = run_tfl("train", "--data", "folder:/nonexistent/x", "--out", str(tmp_path / "r"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("tfl: error:") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    unknown = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--backbone", "mobilnet_025", "--weights",
                      "none", "--out", str(tmp_path / "r2"), check=False)
    assert unknown.returncode == 2 and "mobilenet_025" in unknown.stderr
