"""tfl's defaults against the Keras transfer-learning guide's recipe: one real-weights row of each family.

With no flags beyond data, backbone and weights, tfl must beat the guide's
final accuracy by at least 3 points at the same numbers of epochs, and the
model it keeps must never be worse than its stage 1. The rows here are one
per family with real weights (MobileNet v1 on hymenoptera and trashnet,
MobileNetV2 on the aerial rsscn7); `benchmarks/defaults_matrix.py` runs all 4
datasets x 4 backbones. The guide runs in the background from the start of
the session (`keras_guide_baseline` in conftest.py), and these tests run last.
The hymenoptera run is the session's `trained_run` (the defaults at 224 px);
the others run through the real command line.
"""

import json
import os

import pytest
from helpers import run_tfl
from keras_guide import keras_guide_recipe

from tfl.config import TrainConfig
from tfl.runs import RunFolder


def _assert_beats_the_guide(metrics, guide, margin=0.03):
    s1, s2, kept = (metrics["stage1"]["val_accuracy"], metrics["stage2"]["val_accuracy"],
                    metrics["val_accuracy"])
    assert kept == max(s1, s2) and metrics["best_stage"] == (2 if s2 >= s1 else 1)
    assert kept >= s1, f"the kept model ({kept:.4f}) is worse than stage 1 ({s1:.4f})"
    assert kept >= guide["stage2"] + margin, (f"tfl {kept:.4f} is not {margin:.2f} ahead of the guide's final "
                                              f"{guide['stage2']:.4f}")
    # Stage 2 ran with the depth the run decided from its data, and says why.
    decided = metrics["decisions"]["stage 2 depth"]
    assert decided["chosen"].startswith("--unfreeze ") and decided["why"] and decided["seconds"] >= 0


def _assert_defaults_and_same_epochs(cfg, guide):
    defaults = TrainConfig()
    assert (cfg.stage1, cfg.stage2, cfg.model.head) == (defaults.stage1, defaults.stage2, defaults.model.head)
    assert cfg.augment_copies == defaults.augment_copies and cfg.seed == defaults.seed
    assert (guide["epochs"], guide["fine_tune_epochs"]) == (cfg.stage1.epochs, cfg.stage2.epochs)
    assert len(guide["history1"]) == cfg.stage1.epochs and len(guide["history2"]) == cfg.stage2.epochs


def test_defaults_on_hymenoptera_reach_085_and_beat_the_keras_guide(trained_run, keras_guide_baseline):
    run = RunFolder(trained_run.run_dir)
    metrics = run.read_metrics()
    # The defaults' target at 224 px is 0.87 on average. Measured with this fixture's config over seeds 42, 1,
    # 2, 3 and 4: kept 0.856 / 0.882 / 0.908 / 0.882 / 0.882 (mean 0.882; stage 1 0.843-0.882). One seed
    # moves the kept accuracy by about 2 points (3 of 153 images), so the suite's single seed is held to 0.85.
    assert metrics["val_accuracy"] >= 0.85
    guide = keras_guide_baseline("hymenoptera_data", "mobilenet_025")
    _assert_defaults_and_same_epochs(run.read_config(), guide)
    print(f"hymenoptera: tfl {metrics['stage1']['val_accuracy']:.4f} / {metrics['stage2']['val_accuracy']:.4f}, "
          f"keras guide {guide['stage1']:.4f} / {guide['stage2']:.4f}")
    _assert_beats_the_guide(metrics, guide)


def test_tfl_train_with_no_flags_beats_the_keras_guide_on_trashnet(tmp_path, trashnet, keras_guide_baseline):
    out = str(tmp_path / "trash")
    run_tfl("train", "--data", f"folder:{trashnet}", "--backbone", "mobilenet_025", "--weights", "imagenet",
            "--out", out)
    run = RunFolder(out)
    assert run.read_config().model.image_size is None  # the backbone's own 224 px
    with open(run.metrics_path) as f:
        metrics = json.load(f)
    guide = keras_guide_baseline("trashnet_subset", "mobilenet_025")
    _assert_defaults_and_same_epochs(run.read_config(), guide)
    print(f"trashnet: tfl {metrics['stage1']['val_accuracy']:.4f} / {metrics['stage2']['val_accuracy']:.4f}, "
          f"keras guide {guide['stage1']:.4f} / {guide['stage2']:.4f}")
    _assert_beats_the_guide(metrics, guide)
    report = os.path.join(out, "report")
    with open(os.path.join(report, "index.html"), encoding="utf-8") as f:
        page = f.read()
    for image in ("training_curves.png", "confusion_matrix.png"):
        assert f'src="{image}"' in page
        with open(os.path.join(report, image), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(report, "confusion_matrix.json")) as f:
        matrix = json.load(f)
    # The matrix is of the model the run kept: 120 validation images, its diagonal is the accuracy.
    counts = matrix["matrix"]
    assert len(counts) == 6 and sum(map(sum, counts)) == 120
    assert sum(counts[i][i] for i in range(6)) / 120 == pytest.approx(metrics["val_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_mobilenet_v2_defaults_beat_the_keras_guide_on_aerial_photos(tmp_path, shared_dir, keras_guide_baseline):
    # rsscn7 (aerial land use) is far from ImageNet: the run should decide to retrain more than the top 2 blocks.
    out = str(tmp_path / "aerial")
    run_tfl("train", "--data", f"folder:{os.path.join(shared_dir, 'datasets', 'rsscn7_subset')}",
            "--backbone", "mobilenet_v2_035", "--out", out)
    run = RunFolder(out)
    metrics = run.read_metrics()
    guide = keras_guide_baseline("rsscn7_subset", "mobilenet_v2_035")
    _assert_defaults_and_same_epochs(run.read_config(), guide)
    print(f"rsscn7 mobilenet_v2_035: tfl {metrics['stage1']['val_accuracy']:.4f} / "
          f"{metrics['stage2']['val_accuracy']:.4f} ({metrics['decisions']['stage 2 depth']['chosen']}), "
          f"keras guide {guide['stage1']:.4f} / {guide['stage2']:.4f}")
    _assert_beats_the_guide(metrics, guide)


def test_keras_guide_recipe_refuses_a_folder_without_splits(tmp_path):
    from tfl.errors import UsageError

    with pytest.raises(UsageError, match="train/<class>/ and val/<class>/"):
        keras_guide_recipe(str(tmp_path), epochs=1, fine_tune_epochs=0)
