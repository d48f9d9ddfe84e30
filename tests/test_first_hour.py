"""A new user's first hour, offline: real transfer learning from the weights that ship with tfl, no dead
ends after a bad first command, Python errors in Python's words, no start-up noise."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from helpers import REPO, run_tfl


def _fresh_env(home, **extra):
    """An empty HOME, no KERAS_HOME, no network (this machine has none): what a newcomer has."""
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_HOME", "TFL_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(HOME=str(home), **extra)
    return env


@pytest.fixture
def small_data(tmp_path, hymenoptera):
    """8+8 training and 4+4 validation hymenoptera images."""
    root = tmp_path / "photos"
    for split, n in (("train", 8), ("val", 4)):
        for cls in ("ants", "bees"):
            os.makedirs(root / split / cls)
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[:n]:
                shutil.copy(os.path.join(hymenoptera, split, cls, name), root / split / cls / name)
    return root


def _h5_conv1(path, layer="conv1"):
    with h5py.File(path, "r") as f:
        group = f[layer] if layer in f else f["model_weights"][layer]
        names = []
        group.visit(names.append)
        kernel = next(n for n in names if n.endswith("kernel:0") or n.endswith("kernel"))
        return np.asarray(group[kernel])


_BUNDLED_PROBE = r"""
import json, sys, time
from tfl.models import backbones as B
name, layer = sys.argv[1:]
t = time.time()
m = B.build_backbone(name, 128, "imagenet")
print("RESULT " + json.dumps({"kernel": m.get_layer(layer).kernel.numpy().tolist(), "seconds": time.time() - t,
                              "cached": B.imagenet_weights_cached(name)}))
"""


@pytest.mark.parametrize("name,layer,file", [
    ("mobilenet_025", "conv1", "mobilenet_2_5_224_tf_no_top.h5"),
    ("mobilenet_v2_035", "Conv1", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"),  # default
])
def test_the_weights_that_ship_with_tfl_load_when_keras_has_none_and_no_network(tmp_path, keras_home, name,
                                                                                layer, file):
    proc = subprocess.run([sys.executable, "-c", _BUNDLED_PROBE, name, layer], cwd=REPO, capture_output=True,
                          text=True, env=_fresh_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["cached"] is False  # nothing in the (empty) Keras cache: the package's own copy was used
    # The same values as the real file in ../shared (the session's KERAS_HOME copy).
    np.testing.assert_array_equal(np.array(result["kernel"], "float32"),
                                  _h5_conv1(os.path.join(keras_home, "models", file), layer))
    assert "using the copy that ships with tfl" in proc.stderr
    assert "Downloading data from" not in proc.stdout + proc.stderr  # no download attempt without a network
    assert result["seconds"] < 90  # a few seconds idle; the point is no minutes-long download attempt


def test_weights_none_trains_every_layer_from_scratch_in_one_stage(small_data, tmp_path):
    from tfl.config import TrainConfig
    from tfl.models import classifier as model_lib
    from tfl.runs import RunFolder
    from tfl.training.trainer import Trainer

    cfg = TrainConfig()
    cfg.data.source = f"folder:{small_data}"
    # MobileNet 0.25: every BatchNorm sees live inputs at 32 px (in MobileNetV2 0.35 a narrow layer can stay at 0).
    cfg.model.backbone = "mobilenet_025"
    cfg.model.weights, cfg.model.image_size, cfg.model.augment = None, 32, False
    cfg.stage1.epochs, cfg.stage2.epochs = 2, 3
    trainer = Trainer(cfg, str(tmp_path / "run"), verbose=0, report=False)
    result = trainer.fit()
    assert result.best_stage == 1 and result.stage2 == {} and result.stage1["epochs"] == 2
    plan = RunFolder(result.run_dir).read_state()["plan"]
    assert plan["stage1"]["inputs"] == "images" and "from scratch" in plan["stage1"]["reason"]
    assert plan["stage2"]["epochs"] == 0

    fresh = model_lib.build_model(cfg.model, 2, seed=cfg.seed, scratch=True)
    backbone, start = model_lib.backbone_of(result.model), model_lib.backbone_of(fresh)
    assert all(layer.trainable for layer in backbone.layers)
    conv = [layer.name for layer in backbone.layers if type(layer).__name__ == "Conv2D"]
    bn = [layer.name for layer in backbone.layers if type(layer).__name__ == "BatchNormalization"]
    for name in (conv[0], conv[-1]):  # the first and last convolution both trained
        assert not np.allclose(backbone.get_layer(name).kernel.numpy(), start.get_layer(name).kernel.numpy())
    # BatchNorm learned its statistics (training mode), which fine-tuning never does.
    moved = [not np.allclose(backbone.get_layer(n).moving_mean.numpy(), start.get_layer(n).moving_mean.numpy())
             for n in bn]
    assert all(moved)


def test_a_failed_first_command_leaves_nothing_and_the_corrected_one_needs_no_overwrite(small_data, tmp_path):
    loose = tmp_path / "loose"  # images, but no class folders
    loose.mkdir()
    for f in sorted((small_data / "train" / "ants").iterdir())[:3]:
        shutil.copy(f, loose / f.name)
    out = tmp_path / "R"
    bad = run_tfl("train", "--data", f"folder:{loose}", "--out", str(out), check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "class folders" in bad.stderr
    assert not out.exists()
    # The same --out, the folder given without folder: (an existing folder is taken as one), no --overwrite.
    good = run_tfl("train", "--data", str(small_data), "--image-size", "32", "--epochs", "1",
                   "--fine-tune-epochs", "0", "--out", str(out))
    assert "kept stage 1" in good.stdout and (out / "model.keras").exists()
    with open(out / "config.json", encoding="utf-8") as f:
        assert json.load(f)["data"]["source"] == f"folder:{small_data}"
    assert re.search(r"next: tfl evaluate .*tfl export", good.stderr)


def test_the_python_api_names_keyword_arguments(small_data, tmp_path):
    import tfl

    kwargs = dict(data=f"folder:{small_data}", image_size=32, epochs=1, fine_tune_epochs=0, verbose=0,
                  out=str(tmp_path / "run"))
    tfl.fine_tune(**kwargs)
    with pytest.raises(tfl.UsageError) as info:
        tfl.fine_tune(**kwargs)
    message = str(info.value)
    assert "overwrite=True" in message and "resume=True" in message and "--" not in message


def test_an_unprepared_tfds_dataset_fails_within_seconds_offline(tmp_path):
    out = tmp_path / "run"
    t = time.time()
    proc = run_tfl("train", "--data", "tfds:beans", "--data-dir", str(tmp_path / "tfds"), "--out", str(out),
                   check=False)
    assert time.time() - t < 60  # TensorFlow's import included; tfds' own retries take minutes
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot be downloaded" in proc.stderr and "--data folder:" in proc.stderr
    assert "--data-dir" in proc.stderr and not out.exists()


def test_importing_tfl_hides_tensorflows_start_up_lines_and_generated_data_says_no_download(tmp_path):
    code = ("import tfl; import tensorflow as tf; d = tfl.load_data('tfds:tfl_shapes/small'); "
            "print(len(d.train), tf.constant(1).numpy())")
    env = _fresh_env(tmp_path, TFDS_DATA_DIR=str(tmp_path / "tfds"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["160", "1"]
    for noise in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "Downloading", "dataset_info.json"):
        assert noise not in proc.stdout + proc.stderr, (noise, proc.stderr)
    assert "generated on this machine (no download)" in proc.stderr


@pytest.mark.slow
def test_the_readme_first_command_shows_real_transfer_offline(tmp_path):
    """The quickstart on a fresh machine: empty HOME, no KERAS_HOME, no network."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "quickstart.py"), "--out",
                           str(tmp_path / "qs")], cwd=tmp_path, capture_output=True, text=True,
                          env=_fresh_env(tmp_path / "home"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = re.search(r"\[quickstart\] stage 1 val_accuracy ([\d.]+), stage 2 ([\d.]+), kept stage ([12])",
                     proc.stdout)
    assert kept, proc.stdout
    accuracy = float(kept.group(int(kept.group(3))))
    assert accuracy >= 0.85, proc.stdout
    assert "using the copy that ships with tfl" in proc.stderr
