"""The learning-rate range test on real photos with the real ImageNet MobileNet."""

import json
import math
import os
import shutil

import pytest
from helpers import run_tfl
from PIL import Image

from tfl.config import TrainConfig
from tfl.runs import RunFolder
from tfl.training import lr_finder
from tfl.training.activations import ActivationStore
from tfl.training.trainer import Trainer

SIZE = 128


@pytest.fixture(scope="module")
def shared_features():
    """One activation store for this module's runs: the backbone features are computed once."""
    return ActivationStore()


def _stage1_config(data, lr, epochs=5):
    cfg = TrainConfig()
    cfg.data.source = f"folder:{data}"
    cfg.model.image_size = SIZE
    cfg.stage1.lr, cfg.stage1.epochs = lr, epochs
    cfg.stage2.epochs = 0
    cfg.augment_copies = 2  # fewer backbone passes: the test is about the learning rate
    return cfg


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + k / 20) for k in range(120)]  # 1e-6 .. 1e0
    # Flat, falls between 1e-4 and 1e-2, then blows up.
    losses = [1.0 if lr < 1e-4 else max(0.2, 1.0 - 0.4 * math.log10(lr / 1e-4)) if lr < 1e-2 else
              0.2 + 5 * math.log10(lr / 1e-2) for lr in lrs]
    for method in lr_finder.METHODS:
        assert 1e-4 <= lr_finder.suggest(lrs, losses, method) <= 1e-2, method
    with pytest.raises(ValueError, match="unknown suggestion method"):
        lr_finder.suggest(lrs, losses, "median")


def test_lr_auto_uses_the_suggestion_and_it_beats_100_times_it(tmp_path, hymenoptera, shared_features):
    """`--lr auto` runs the range test, trains with its suggestion, and that beats a run at 100x."""
    auto = Trainer(_stage1_config(hymenoptera, "auto"), str(tmp_path / "auto"), verbose=0,
                   store=shared_features, report=False).fit()
    run = RunFolder(auto.run_dir)
    lr = run.read_state()["stage1"]["lr_found"]
    assert 1e-5 < lr < 1.0
    png = os.path.join(auto.run_dir, "lr_find_stage1.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 400
    with open(os.path.splitext(png)[0] + ".json") as f:
        curve = json.load(f)
    assert curve["suggestion"] == lr and curve["method"] == "valley" and len(curve["lrs"]) > 50
    # The loss fell somewhere before the suggestion and blew up after it.
    assert min(curve["smoothed"]) < curve["smoothed"][0] < max(curve["smoothed"])

    high = Trainer(_stage1_config(hymenoptera, 100 * lr), str(tmp_path / "high"), verbose=0,
                   store=shared_features, report=False).fit()
    # On 153 validation images the accuracies may tie (both 0.8301 in one run); the loss tells them apart.
    assert auto.stage1["val_accuracy"] >= high.stage1["val_accuracy"]
    assert auto.stage1["val_loss"] < high.stage1["val_loss"]


def test_cli_lr_find_stage2_writes_the_plot_and_the_curve(tmp_path, hymenoptera):
    data = tmp_path / "data"
    for split, n in (("train", 24), ("val", 8)):
        for cls in ("ants", "bees"):
            os.makedirs(data / split / cls)
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[:n]:
                shutil.copy(os.path.join(hymenoptera, split, cls, name), data / split / cls)
    out = tmp_path / "lr.png"
    proc = run_tfl("lr-find", "--data", f"folder:{data}", "--image-size", "64", "--stage", "2", "--epochs", "2",
                   "--steps", "30", "--min-lr", "1e-6", "--max-lr", "1", "--out", str(out), "--json")
    result = json.loads(proc.stdout)
    assert result["stage"] == 2 and len(result["lrs"]) == len(result["losses"]) >= 10
    assert result["lrs"][0] == pytest.approx(1e-6)
    assert result["lrs"][0] <= result["suggestion"] <= result["lrs"][-1]
    with Image.open(out) as image:
        assert image.format == "PNG"
    with open(tmp_path / "lr.json") as f:
        assert json.load(f)["suggestion"] == result["suggestion"]

    bad = run_tfl("lr-find", "--data", f"folder:{data}", "--out", str(tmp_path / "lr.jpg"), check=False)
    assert bad.returncode == 2 and "--out" in bad.stderr and "Traceback" not in bad.stderr
