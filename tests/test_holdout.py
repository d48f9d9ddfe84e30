"""Honest numbers: the kept model is chosen on val, so it is scored on a test split nothing was chosen on.

The test split is the data's own (a `test/` folder, csv test rows) or `--holdout FRACTION` of train,
stratified and seeded, so `tfl evaluate RUN --split test` reloads the very same images.
"""

import json
import os

import helpers
import pytest

from tfl.data.loading import load_data

HYMENOPTERA = os.path.join(helpers.SHARED, "datasets", "hymenoptera_data")


def test_holdout_is_a_stratified_seeded_split_apart_from_train_and_val(tmp_path):
    small = helpers.small_copy(HYMENOPTERA, tmp_path / "d", per_class=20, per_class_val=5)
    plain = load_data(f"folder:{small}")
    data = load_data(f"folder:{small}", holdout=0.25)
    assert plain.test is None and data.test is not None
    assert sorted(data.test.labels) == [0] * 5 + [1] * 5  # 25% of 20 per class
    assert len(data.train) == 30 and data.val.paths == plain.val.paths
    assert not set(data.test.paths) & set(data.train.paths)
    assert set(data.test.paths) | set(data.train.paths) == set(plain.train.paths)
    assert load_data(f"folder:{small}", holdout=0.25).test.paths == data.test.paths  # seeded
    assert load_data(f"folder:{small}", holdout=0.25, seed=7).test.paths != data.test.paths
    assert "held out" in data.layout


def test_a_test_folder_is_used_and_nothing_more_is_held_out(tmp_path, caplog):
    small = helpers.small_copy(HYMENOPTERA, tmp_path / "d", per_class=8, per_class_val=4)
    os.rename(os.path.join(small, "val"), os.path.join(small, "test"))
    helpers.small_copy(HYMENOPTERA, tmp_path / "v", per_class=8, per_class_val=4)
    os.rename(tmp_path / "v" / "val", os.path.join(small, "val"))
    data = load_data(f"folder:{small}", holdout=0.25)
    assert len(data.test) == 8 and len(data.train) == 16
    assert "has its own test split" in caplog.text


def test_train_scores_the_kept_model_on_the_held_out_images(tmp_path):
    small = helpers.small_copy(HYMENOPTERA, tmp_path / "d", per_class=24, per_class_val=10)
    run = tmp_path / "run"
    proc = helpers.run_tfl("train", "--data", f"folder:{small}", "--holdout", "0.25", "--image-size", "96",
                           "--epochs", "2", "--fine-tune-epochs", "1", "--out", str(run))
    line = next(x for x in proc.stdout.splitlines() if x.startswith("test: "))
    assert "on 12 images" in line and "never used to choose anything" in line
    with open(run / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    test = metrics["test"]
    assert metrics["selected_on"] == "val" and test["num_images"] == 12 and "held out" in test["split"]
    # `tfl evaluate --split test` reloads the same seeded split and gets the same score.
    again = json.loads(helpers.run_tfl("evaluate", str(run), "--split", "test", "--json").stdout)
    assert again["num_images"] == 12
    assert again["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    info = helpers.run_tfl("info", str(run)).stdout
    assert "test:" in info and f"{test['accuracy']:.4f}" in info
    with open(run / "report" / "index.html", encoding="utf-8") as f:
        assert "never used to choose" in f.read()


def test_holdout_out_of_range_is_one_line(tmp_path):
    proc = helpers.run_tfl("train", "--data", f"folder:{HYMENOPTERA}", "--holdout", "0.95", "--out",
                           str(tmp_path / "r"), check=False)
    assert proc.returncode == 2
    err = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(err) <= 3 and "--holdout" in proc.stderr and not (tmp_path / "r").exists()
