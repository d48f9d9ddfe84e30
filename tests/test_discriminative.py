"""Discriminative learning rates and gradual unfreezing, on the real MobileNet with ImageNet weights."""

import math
import os
import shutil
import warnings

import numpy as np
import pytest
from helpers import run_tfl

from tfl.config import ModelConfig, StageConfig, TrainConfig, parse_lr
from tfl.data import loading as data_lib
from tfl.models import backbones
from tfl.models import classifier as model_lib
from tfl.training import _discriminative, _optim

SIZE = 96


@pytest.fixture(scope="module")
def batch(hymenoptera):
    """16 real photos (8 ants, 8 bees) at 96 px, with one-hot labels."""
    import tensorflow as tf

    data = data_lib.load_data(f"folder:{hymenoptera}")
    picks = [i for c in (0, 1) for i in [k for k, y in enumerate(data.train.labels) if y == c][:8]]
    x = tf.stack([data_lib.resize_image(data_lib.decode_image(tf.io.read_file(data.train.paths[i])), SIZE)
                  for i in picks])
    return x, tf.one_hot([data.train.labels[i] for i in picks], 2)


def _model():
    # No augmentation or dropout: both runs below see exactly the same forward pass.
    cfg = ModelConfig(backbone="mobilenet_025", weights="imagenet", image_size=SIZE, augment=False)
    cfg.head.dropout = 0.0
    model = model_lib.build_model(cfg, 2, seed=0)
    ids = backbones.block_ids("mobilenet_025", model_lib.backbone_of(model))
    model_lib.unfreeze(model, "all", ids)
    return model, ids


def _relative_change(model, ids, block, before):
    """||w1 - w0|| / ||w0|| over the conv kernels of one backbone block."""
    backbone = model_lib.backbone_of(model)
    num = den = 0.0
    for layer, b in zip(backbone.layers, ids):
        if b == block:  # its convolutions (BatchNorm is never trainable)
            for w in layer.trainable_weights:
                w0 = before[id(w)]
                num += float(np.sum((w.numpy() - w0) ** 2))
                den += float(np.sum(w0 ** 2))
    assert den > 0, f"block {block} has no kernels"
    return math.sqrt(num) / math.sqrt(den)


def _one_step(batch, lr_setting):
    """One step of the stage-2 optimizer on the unfrozen model; relative change of block 1 and block 13."""
    import keras
    import tensorflow as tf

    model, ids = _model()
    kind, low, high = parse_lr(lr_setting)
    stage = StageConfig(lr=lr_setting, optimizer="adam", schedule="constant")
    groups = _discriminative.LayerGroups(model, ids, low if kind == "range" else None, high)
    optimizer = _optim.make_optimizer(stage, 1, groups=groups, lr=high)
    before = {id(w): w.numpy().copy() for w in model.trainable_weights}
    x, y = batch
    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy()(y, model(x, training=True))
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return groups, _relative_change(model, ids, 1, before), _relative_change(model, ids, 13, before)


def test_one_step_changes_early_blocks_less_by_the_configured_ratio(batch):
    groups, early, late = _one_step(batch, "1e-5..1e-3")
    # 14 MobileNet blocks + the head = 15 groups, spread geometrically from 1e-5 to 1e-3.
    assert groups.num_groups == 15
    assert groups.rates[0] == pytest.approx(1e-5) and groups.rates[-1] == pytest.approx(1e-3)
    configured = groups.rates[1] / groups.rates[13]  # = 100 ** (-12 / 14), about 1/52
    _, early_same, late_same = _one_step(batch, 1e-3)
    assert early < late / 10
    # Adam's first step moves each weight by about lr: against the same step with one rate for all,
    # the ratio of relative changes is the configured ratio of rates.
    measured = (early / late) / (early_same / late_same)
    assert measured == pytest.approx(configured, rel=0.05)
    assert early / early_same == pytest.approx(groups.rates[1] / 1e-3, rel=0.05)
    assert late / late_same == pytest.approx(groups.rates[13] / 1e-3, rel=0.05)


def test_gradual_unfreezing_releases_blocks_from_the_top_and_the_model_reloads(tmp_path, hymenoptera):
    """A real stage 2 with 2 blocks released one per epoch: block 12 is still untouched after epoch 1."""
    import keras

    from tfl.serving.prediction import load_model
    from tfl.training.trainer import Trainer

    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if self.model.name == "tfl_classifier":  # stage 2 (stage 1 trains the head alone)
                backbone = model_lib.backbone_of(self.model)
                snapshots.append({n: backbone.get_layer(n).kernel.numpy().copy() for n in ("conv_pw_12", "conv_pw_13")})

    for split, n in (("train", 16), ("val", 8)):  # a small real subset: one step per epoch
        for cls in ("ants", "bees"):
            os.makedirs(tmp_path / "data" / split / cls)
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[:n]:
                shutil.copy(os.path.join(hymenoptera, split, cls, name), tmp_path / "data" / split / cls)
    cfg = TrainConfig()
    cfg.data.source = f"folder:{tmp_path / 'data'}"
    cfg.model.backbone, cfg.model.image_size = "mobilenet_025", SIZE  # its block layers are named below
    cfg.stage1.epochs = 1
    cfg.stage2.epochs, cfg.stage2.unfreeze, cfg.stage2.gradual = 2, "2blocks", True
    cfg.stage2.lr, cfg.stage2.warmup_epochs, cfg.stage2.schedule = "1e-4..1e-3", 0.0, "constant"
    fresh = model_lib.backbone_of(model_lib.build_model(cfg.model, 2))
    start = {n: fresh.get_layer(n).kernel.numpy() for n in ("conv_pw_12", "conv_pw_13")}
    result = Trainer(cfg, str(tmp_path / "run"), verbose=0, callbacks=[Snapshot()], report=False).fit()
    assert len(snapshots) == 2
    np.testing.assert_array_equal(snapshots[0]["conv_pw_12"], start["conv_pw_12"])
    assert not np.array_equal(snapshots[0]["conv_pw_13"], start["conv_pw_13"])
    assert not np.array_equal(snapshots[1]["conv_pw_12"], snapshots[0]["conv_pw_12"])
    # The saved model carries a plain Keras optimizer: it loads without tfl's optimizer class or warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(result.run_dir)
    assert type(model.optimizer) is keras.optimizers.Adam
    assert not [w for w in caught if "optimizer" in str(w.message).lower()]
    assert os.path.exists(os.path.join(result.run_dir, "model.keras"))


def test_lr_settings_round_trip_and_bad_ranges_are_one_line(tmp_path):
    cfg = TrainConfig()
    cfg.stage1.lr, cfg.stage2.lr = "auto", "1e-5..1e-3"
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert parse_lr("1e-5..1e-3") == ("range", 1e-5, 1e-3)
    proc = run_tfl("train", "--data", f"folder:{tmp_path}", "--fine-tune-lr", "1e-3..1e-5", check=False)
    assert proc.returncode == 2
    assert "--fine-tune-lr range '1e-3..1e-5' needs 0 < LOW < HIGH" in proc.stderr
    assert "Traceback" not in proc.stderr
