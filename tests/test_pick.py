"""`tfl pick` and `--backbone auto` on real backbones with their real ImageNet weights (the KERAS_HOME copy
of ../shared/keras-weights) and real photos (hymenoptera), at small sizes to stay fast.

TFL_OFFLINE=1 makes "no network" certain, so a backbone without local weights is skipped the same way on
every machine.
"""

import json
import os

import numpy as np
import pytest
from helpers import run_tfl
from PIL import Image

OFFLINE = {"TFL_OFFLINE": "1"}


def test_pick_ranks_real_backbones_writes_its_page_and_skips_one_without_weights(tmp_path, hymenoptera):
    out = tmp_path / "pick"
    proc = run_tfl("pick", "--data", f"folder:{hymenoptera}", "--candidates",
                   "mobilenet_v2_035,efficientnet_v2_b0,mobilenet_025", "--image-size", "96", "--max-images", "120",
                   "--out", str(out), env=OFFLINE)
    assert "Traceback" not in proc.stderr
    skip = [line for line in (proc.stdout + proc.stderr).splitlines() if "efficientnet_v2_b0" in line]
    assert skip == ["[tfl] skipped efficientnet_v2_b0: no ImageNet weights cached and no network "
                    "(TFL_OFFLINE is set)"]  # one line in all, said as it happened
    result = json.loads((out / "pick.json").read_text())
    scored = [c for c in result["candidates"] if c["status"] == "scored"]
    assert [c["rank"] for c in scored] == [1, 2]
    assert {c["name"] for c in scored} == {"mobilenet_025", "mobilenet_v2_035"}
    assert scored[0]["accuracy"] >= scored[1]["accuracy"]
    # Real ImageNet features separate ants from bees well above chance (0.5) even at 96 px.
    assert scored[0]["accuracy"] > 0.7
    from tfl.models import backbones

    for c in scored:
        assert c["params"] == backbones.stats(c["name"])["params"]  # the whole backbone, counted on the model
        assert 0 < c["batch1_ms"] < 10_000 and 0 < c["batch_ms"] < 10_000 and c["batch_size"] == 32
        assert c["weights_mb"] > 1 and c["image_size"] == 96 and 0 < c["stderr"] < 0.1
    assert result["chosen"] in {c["name"] for c in scored}
    assert result["split"] == "val" and result["subsampled"] is True
    assert (result["num_train"], result["num_val"]) == (120, 60)  # class-balanced subsample of 244 / 153
    assert "the fastest of those (batch-1 latency) wins" in result["rule"]
    assert result["command"] == (f"tfl train --data folder:{hymenoptera} --backbone {result['chosen']} "
                                 "--image-size 96")
    assert f"recommended: {result['chosen']}: " in proc.stdout
    assert f"train it: {result['command']}" in proc.stdout
    page = (out / "index.html").read_text()
    assert result["chosen"] in page and "pick.png" in page and "efficientnet_v2_b0" in page
    with Image.open(out / "pick.png") as png:
        assert png.format == "PNG" and png.size == (800, 500)
        assert len(png.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 20  # drawn, not blank
    assert sorted(result["plot"]["front"]) == sorted(c["name"] for c in scored if c["pareto"])


def test_a_latency_limit_below_every_candidate_is_one_usage_line(tmp_path, hymenoptera):
    proc = run_tfl("pick", "--data", f"folder:{hymenoptera}", "--candidates", "mobilenet_025", "--image-size", "96",
                   "--max-latency-ms", "0.0001", "--out", str(tmp_path / "pick"), check=False, env=OFFLINE)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tfl:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("tfl: error: --max-latency-ms 0.0001: every candidate takes longer on this machine "
                                "(fastest: mobilenet_025, ")
    assert proc.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--candidates", "mobilenet_v9"], "tfl: error: --candidates: unknown backbone 'mobilenet_v9'; did you mean"),
    (["--budget", "soon"], "tfl: error: --budget 'soon' is not a duration such as 900, 900s, 15m or 2h"),
    (["--max-params", "lots"], "'lots' is not a count such as 3000000, 3.5M or 500k"),
    (["--candidates", "mobilenet_025", "--family", "mobilenet"], "tfl: error: --candidates and --family: give one"),
])
def test_bad_pick_options_are_one_line(tmp_path, hymenoptera, args, message):
    proc = run_tfl("pick", "--data", f"folder:{hymenoptera}", *args, "--out", str(tmp_path / "p"), check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_only_the_augmented_copies_of_the_winner_are_computed_after_a_pick(hymenoptera):
    """The pick's features of the winner (plain copy and validation) are what stage 1 trains on, not recomputed."""
    from tfl.config import ModelConfig, TrainConfig
    from tfl.data.loading import load_data
    from tfl.models import backbones
    from tfl.models import classifier as model_lib
    from tfl.selection.pick import pick
    from tfl.training import plan as plan_lib
    from tfl.training.activations import ActivationStore
    from tfl.training.cut import BottomSplit

    data = load_data(f"folder:{hymenoptera}")
    store = ActivationStore()
    result = pick(data, candidates="mobilenet_025", image_size=96, store=store)
    assert result.chosen == "mobilenet_025" and result.features.copies == 1
    cfg = TrainConfig(model=ModelConfig("mobilenet_025", image_size=96))
    cfg.stage2.unfreeze = "2blocks"  # a fixed cut (auto is decided by a run)
    model = model_lib.build_model(cfg.model, data.num_classes, seed=1)  # with its augmentation, as a run builds it
    spec = backbones.get_backbone("mobilenet_025")
    unfrozen = plan_lib.unfrozen_layers(cfg, len(model_lib.backbone_of(model).layers),
                                        backbones.block_ids(spec, model_lib.backbone_of(model)))
    split = BottomSplit(model, unfrozen)
    feats = store.features(model, data, 96, 32, copies=3, seed=42, split=split)
    assert feats.train[0] is result.features.train[0] and feats.val is result.features.val
    assert feats.copies == 3 and not np.allclose(feats.train[1], feats.train[0], atol=1e-3)  # augmented
    acts, kept = store.activations(split, data, 96, 32, copies=3, seed=42, kept_copies=3)
    assert kept
    # The cut activations of the plain copy (computed by the bottom alone) and the reused features are what
    # one pass without the pick computes.
    fresh_store = ActivationStore()
    fresh = fresh_store.features(model, data, 96, 32, copies=3, seed=42, split=split)
    fresh_acts, _ = fresh_store.activations(split, data, 96, 32, copies=3, seed=42, kept_copies=3)
    np.testing.assert_allclose(fresh.train[0], feats.train[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fresh.val, feats.val, rtol=1e-4, atol=1e-4)
    for a, b in zip(fresh_acts.train[0] + fresh_acts.val, acts.train[0] + acts.val):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_litert_engine_scores_what_tensorflow_scores_and_says_which_ran(hymenoptera):
    """LiteRT (the pick's engine where ai-edge-litert is installed, as for tfl predict) computes the features
    TensorFlow computes, so the probe scores the same; each row and the table name what ran the passes."""
    from tfl.data.loading import load_data
    from tfl.selection.pick import pick
    from tfl.training.activations import ActivationStore

    data = load_data(f"folder:{hymenoptera}")
    runs = {engine: pick(data, candidates="mobilenet_025", image_size=96, max_images=120, engine=engine,
                         store=ActivationStore(cache_dir=None)) for engine in ("keras", "litert", "auto")}
    keras_row, lite_row = runs["keras"].scored[0], runs["litert"].scored[0]
    assert (keras_row.engine, lite_row.engine, runs["auto"].scored[0].engine) == ("keras", "litert", "litert")
    scale = float(np.abs(runs["keras"].features.val).max())
    for got, want in ((runs["litert"].features.val, runs["keras"].features.val),
                      (runs["litert"].features.train[0], runs["keras"].features.train[0])):
        assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, scale)
    assert lite_row.accuracy == keras_row.accuracy and lite_row.l2 == keras_row.l2
    assert 0 < lite_row.batch1_ms < 10_000 and 0 < lite_row.batch_ms < 10_000
    assert "passes and latency through LiteRT (XNNPACK)" in runs["litert"].table()
    assert "passes and latency through TensorFlow" in runs["keras"].table()


def test_a_feature_function_litert_cannot_convert_falls_back_to_tensorflow_in_one_line(caplog):
    """auto falls back to TensorFlow with one line; an explicit --engine litert says why it cannot."""
    import tensorflow as tf

    from tfl.errors import TflError
    from tfl.selection.engine import feature_runner

    def mean_in_numpy(x):  # a NumPy call inside the graph: TFLite has no kernel for it
        return tf.numpy_function(lambda a: a.mean(axis=(1, 2)), [x], tf.float32)

    plain = tf.function(mean_in_numpy, input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)],
                        autograph=False)
    with caplog.at_level("INFO", logger="tfl"):
        runner, engine = feature_runner(plain, 8, "auto", "toy_backbone")
    assert runner is plain and engine == "keras"
    lines = [r.getMessage() for r in caplog.records if "toy_backbone" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("pick: toy_backbone: TFLite conversion failed")
    assert lines[0].endswith("its features and latency come from TensorFlow")
    with pytest.raises(TflError, match="TFLite conversion failed"):
        feature_runner(plain, 8, "litert", "toy_backbone")


@pytest.mark.slow
def test_train_backbone_auto_trains_the_winner_and_says_why(tmp_path, hymenoptera):
    run = tmp_path / "run"
    proc = run_tfl("train", "--backbone", "auto", "--data", f"folder:{hymenoptera}", "--image-size", "96",
                   "--epochs", "2", "--fine-tune-epochs", "1", "--out", str(run), env=OFFLINE)
    assert "Traceback" not in proc.stderr
    ranking = json.loads((run / "pick" / "pick.json").read_text())
    winner = ranking["chosen"]
    scored = {c["name"] for c in ranking["candidates"] if c["status"] == "scored"}
    # The four backbones with real weights offline; the default list's others are skipped in one line each.
    assert scored == {"mobilenet_025", "mobilenet_v2_035", "mobilenet_075", "mobilenet_v2"}
    for name in ("mobilenet_v3_large", "efficientnet_v2_b0", "convnext_tiny"):
        assert f"skipped {name}: no ImageNet weights cached and no network (TFL_OFFLINE is set)" in proc.stderr
    config = json.loads((run / "config.json").read_text())
    state = json.loads((run / "state.json").read_text())
    assert config["model"]["backbone"] == winner == state["backbone"]["auto"]
    assert state["backbone"]["why"] == ranking["why"] and state["backbone"]["why"].startswith(f"{winner}: ")
    assert [r["name"] for r in state["backbone"]["ranking"]][0] == ranking["candidates"][0]["name"]
    assert (run / "pick" / "index.html").exists() and (run / "pick" / "pick.png").exists()
    # Stage 1 computed only the augmented copy: the plain one and the validation features came from the pick.
    assert "the plain copy and the validation features are kept from an earlier pass" in proc.stderr
    assert (run / "model.keras").exists() and "kept stage" in proc.stdout
    info = run_tfl("info", str(run))
    assert f"backbone:   auto -> {winner}: " in info.stdout and "model:      " + winner in info.stdout
    from tfl.serving.prediction import Predictor

    bees = os.path.join(hymenoptera, "val", "bees")
    image = os.path.join(bees, sorted(os.listdir(bees))[0])
    (label, probability), = [(r["label"], r["probability"]) for r in Predictor(str(run)).predict([image])]
    assert label in ("ants", "bees") and 0.5 <= probability <= 1


def test_backbone_auto_refuses_what_it_cannot_compare(tmp_path, hymenoptera):
    proc = run_tfl("train", "--backbone", "auto", "--weights", "none", "--data", f"folder:{hymenoptera}",
                   "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("tfl: error: --backbone auto compares backbones by their ImageNet features: use "
                                   "--weights imagenet (not none) or name a backbone")
    proc = run_tfl("train", "--backbone", "auto:mobilenet_025,mobilenet_v9", "--data", f"folder:{hymenoptera}",
                   "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("tfl: error: --backbone auto:mobilenet_025,mobilenet_v9: unknown backbone "
                                          "'mobilenet_v9'; did you mean")


def test_tune_backbone_auto_refuses_a_searched_backbone(tmp_path, hymenoptera):
    proc = run_tfl("tune", "--backbone", "auto", "--data", f"folder:{hymenoptera}", "--search",
                   "backbone=mobilenet_025,mobilenet_v2", "--out", str(tmp_path / "search"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tfl: error: --backbone auto and a searched or fixed backbone: give one of them"


@pytest.mark.slow
def test_tune_backbone_auto_picks_once_before_the_search(tmp_path, hymenoptera, monkeypatch):
    import tfl

    out = str(tmp_path / "search")
    monkeypatch.setenv("TFL_OFFLINE", "1")
    result = tfl.tune(data=f"folder:{hymenoptera}", backbone="auto:mobilenet_025,mobilenet_v2_035", image_size=96,
                      epochs=1, fine_tune_epochs=0,
                      max_trials=1, fix={"dense_layers": 0}, out=out)
    settings = json.loads(open(os.path.join(out, "search.json")).read())
    ranking = json.loads(open(os.path.join(out, "pick", "pick.json")).read())
    assert settings["config"]["model"]["backbone"] == ranking["chosen"] == settings["backbone"]["auto"]
    assert {c["name"] for c in ranking["candidates"]} == {"mobilenet_025", "mobilenet_v2_035"}
    assert result.best_run_dir is not None
    best = json.loads(open(os.path.join(result.best_run_dir, "config.json")).read())
    assert best["model"]["backbone"] == ranking["chosen"]
