"""Stage 1 on cached backbone features: the same head as end-to-end training, and a disk cache
that is reused only for the same backbone, weights, image size and data.

Real MobileNet 0.25 ImageNet weights and real images throughout.
"""

import os
import shutil

import numpy as np
import pytest

from tfl.config import ModelConfig, TrainConfig
from tfl.data.loading import load_data
from tfl.training.activations import ActivationStore


def _head_snapshots():
    import keras

    class Snapshots(keras.callbacks.Callback):
        """The head's weights at the start and after every epoch (stage 1 fits the head alone)."""

        def __init__(self):
            super().__init__()
            self.weights = []

        def _head(self):
            return self.model if self.model.name == "head" else self.model.get_layer("head")

        def on_train_begin(self, logs=None):
            self.weights = [self._head().get_weights()]

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self._head().get_weights())

    return Snapshots()


@pytest.fixture
def small_folder(tmp_path, hymenoptera):
    """A copy of 6+6 training and 3+3 validation hymenoptera images that a test may change."""
    root = tmp_path / "data"
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("ants", "bees"):
            os.makedirs(root / split / cls)
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[:n]:
                shutil.copy2(os.path.join(hymenoptera, split, cls, name), root / split / cls / name)
    return root


def _config(folder, stage1_epochs, stage2_epochs):
    cfg = TrainConfig()
    cfg.data.source = f"folder:{folder}"
    cfg.data.batch_size = 64  # one step per epoch: the result does not depend on the order of the images
    cfg.model.image_size, cfg.model.augment, cfg.model.head.dropout = 96, False, 0.0
    cfg.stage1.epochs, cfg.stage1.lr, cfg.stage1.schedule = stage1_epochs, 0.01, "constant"
    # SGD in stage 2: Adam's first steps move every weight by about lr whatever the gradient's size, so
    # float noise in a near-zero gradient of the backbone would flip steps; SGD keeps it noise.
    cfg.stage2.epochs, cfg.stage2.lr, cfg.stage2.optimizer = stage2_epochs, 0.1, "sgd"
    cfg.stage2.schedule, cfg.stage2.warmup_epochs = "constant", 0
    # The comparison cuts MobileNet 0.25 at a fixed depth (the run's own `--unfreeze auto` has its own tests).
    cfg.model.backbone, cfg.stage2.unfreeze = "mobilenet_025", "2blocks"
    return cfg


def _end_to_end(model, cfg, epochs, optimizer=None):
    """Snapshots of the head trained the plain Keras way: whole model, images every epoch."""
    import keras

    model.compile(optimizer or keras.optimizers.Adam(0.01), keras.losses.CategoricalCrossentropy())
    images = load_data(cfg.data).train.dataset(96, 64).map(lambda x, y: (x, keras.ops.one_hot(y, 2)))
    snapshots = _head_snapshots()
    model.fit(images, epochs=epochs, verbose=0, callbacks=[snapshots])
    return snapshots.weights


def _assert_same_training(cached, end_to_end, epochs):
    assert len(cached) == len(end_to_end) == epochs + 1
    moved = max(float(np.abs(a - b).max()) for a, b in zip(cached[-1], cached[0]))
    assert moved > 1e-2, "nothing trained: the comparison would prove nothing"
    for epoch in range(1, epochs + 1):
        for a, b in zip(cached[epoch], end_to_end[epoch]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=f"epoch {epoch}")


def test_stage1_on_features_cached_on_disk_trains_the_same_head_as_end_to_end(tmp_path, small_folder, monkeypatch):
    from tfl.models import classifier as model_lib
    from tfl.training.trainer import Trainer

    monkeypatch.setenv("TFL_MEMORY_MB", "0")  # too big for memory: the run folder's features/
    cfg = _config(small_folder, 4, 0)
    cached = _head_snapshots()
    Trainer(cfg, str(tmp_path / "run"), verbose=0, callbacks=[cached], report=False).fit()
    assert len(os.listdir(tmp_path / "run" / "features")) == 1

    model = model_lib.build_model(cfg.model, 2, seed=cfg.seed)
    model.get_layer("head").set_weights(cached.weights[0])
    _assert_same_training(cached.weights, _end_to_end(model, cfg, 4), 4)


# None: everything in memory; "0.5": the features in memory, the activations written to disk by stage 1's
# pass (18 images: 54 KB of features and 490 KB of activations against 256 KB); "0": nothing in memory.
@pytest.mark.parametrize("memory_mb", [None, "0.5", "0"], ids=["in-memory", "cut-on-disk", "all-on-disk"])
def test_both_stages_on_cached_activations_train_the_same_model_as_end_to_end(tmp_path, small_folder, memory_mb,
                                                                              monkeypatch, caplog):
    import keras

    from tfl.models import backbones
    from tfl.models import classifier as model_lib
    from tfl.training import plan as plan_lib
    from tfl.training.trainer import Trainer

    class Stages(keras.callbacks.Callback):
        """Trainable weights at the start and after every epoch, per stage (stage 2 fits `tfl_top`)."""

        def __init__(self):
            super().__init__()
            self.stages = []

        def on_train_begin(self, logs=None):
            self.stages.append({"model": self.model.name, "all": self.model.get_weights(),
                                "weights": [[w.numpy() for w in self.model.trainable_weights]]})

        def on_epoch_end(self, epoch, logs=None):
            self.stages[-1]["weights"].append([w.numpy() for w in self.model.trainable_weights])

    if memory_mb is not None:  # nothing fits in memory: features and activations go to the run folder
        monkeypatch.setenv("TFL_MEMORY_MB", memory_mb)
    cfg = _config(small_folder, 2, 3)
    stages = Stages()
    Trainer(cfg, str(tmp_path / "run"), verbose=0, callbacks=[stages], report=False).fit()
    assert [s["model"] for s in stages.stages] == ["head", "tfl_top"]  # stage 2 ran on the cut
    folder = tmp_path / "run" / "features"
    on_disk = sorted(os.listdir(folder)) if folder.exists() else []
    # Activations on disk serve only a resumed stage 2: a finished run has dropped them.
    assert not [n for n in on_disk if n.startswith("cut-")], on_disk
    written = f"written to {folder / 'cut-'}"  # the activations at the cut, on disk
    if memory_mb is None:
        assert on_disk == [] and written not in caplog.text
    elif memory_mb == "0.5":  # the features in memory; the activations written by stage 1's pass, read by stage 2
        assert on_disk == [] and written in caplog.text
        assert "read from the disk cache" in caplog.text, caplog.text  # no second pass over the images
    else:  # the pooled features' folder stays
        assert len(on_disk) == 1 and written in caplog.text, on_disk

    model = model_lib.build_model(cfg.model, 2, seed=cfg.seed)
    model.get_layer("head").set_weights(stages.stages[0]["all"])
    _assert_same_training(stages.stages[0]["weights"], _end_to_end(model, cfg, 2), 2)

    # Stage 2 from the same start: the whole model on images, its top 2 blocks unfrozen.
    model = model_lib.build_model(cfg.model, 2, seed=cfg.seed)
    block_ids = backbones.block_ids("mobilenet_025", model_lib.backbone_of(model))
    split = plan_lib.stage2_split(model, cfg, block_ids)
    split.top.set_weights(stages.stages[1]["all"])
    model_lib.unfreeze(model, "2blocks", block_ids)
    _end_to_end(model, cfg, 3, keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    top = [w.numpy() for w in split.top.trainable_weights]
    assert len(top) == len(stages.stages[1]["weights"][-1]) > 2
    cached = stages.stages[1]["weights"]
    moved = [float(np.abs(a - b).max()) for a, b in zip(cached[-1], cached[0])]
    assert min(moved) > 1e-3, f"a trainable weight did not train: {moved}"
    for a, b in zip(cached[-1], top):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


_MODELS = {}


def _cache(data, cache_dir, backbone="mobilenet_025", weights="imagenet", size=64, budget=0, copies=1):
    from tfl.models import classifier as model_lib

    key = (backbone, weights, size, copies)
    if key not in _MODELS:  # building models is most of these tests' time
        _MODELS[key] = model_lib.build_model(ModelConfig(backbone=backbone, weights=weights, image_size=size,
                                                         augment=copies > 1), data.num_classes, seed=0)
    model = _MODELS[key]
    store = ActivationStore(cache_dir=str(cache_dir), memory_budget=budget)
    return store.features(model, data, size, 8, copies=copies, seed=1)


def _epoch_rows(cache, copy_steps):
    ds = cache.train_dataset(lambda y: y, 8, seed=3)
    rows = np.concatenate([x.numpy() for x, _ in ds.take(copy_steps)])
    return rows[np.lexsort(rows.T)]


def test_disk_cache_holds_the_in_memory_features_and_is_reused(small_folder, tmp_path):
    data = load_data(f"folder:{small_folder}")
    memory = _cache(data, tmp_path / "features", budget=10**9, copies=2)
    assert not memory.on_disk and not (tmp_path / "features").exists()
    disk = _cache(data, tmp_path / "features", copies=2)
    assert disk.on_disk and not disk.reused and os.listdir(tmp_path / "features") == [os.path.basename(disk.folder)]
    again = _cache(data, tmp_path / "features", copies=2)
    assert again.reused and again.folder == disk.folder

    np.testing.assert_allclose(np.asarray(disk.train[0]), memory.train[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(disk.val), memory.val, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(again.train[1]), np.asarray(disk.train[1]))
    # Streamed from the .npy files, an epoch is the same features, shuffled, as from memory.
    steps = 2  # 12 images in batches of 8
    np.testing.assert_allclose(_epoch_rows(disk, steps), _epoch_rows(memory, steps), rtol=1e-5, atol=1e-6)
    val = np.concatenate([x.numpy() for x, _ in disk.val_dataset(lambda y: y, 4)])
    np.testing.assert_allclose(val, memory.val, rtol=1e-5, atol=1e-6)


def test_a_changed_backbone_weights_size_or_dataset_never_reads_a_stale_disk_cache(small_folder, tmp_path):
    cache_dir = tmp_path / "features"
    data = load_data(f"folder:{small_folder}")
    first = _cache(data, cache_dir)
    seen = {first.folder}

    def check_fresh(cache):
        assert not cache.reused, "a stale cache was reused"
        assert cache.folder not in seen
        seen.add(cache.folder)
        assert os.listdir(cache_dir) == [os.path.basename(cache.folder)], "the stale cache was not removed"
        return cache

    bigger = check_fresh(_cache(data, cache_dir, size=96))
    random = check_fresh(_cache(data, cache_dir, weights=None))
    other = check_fresh(_cache(data, cache_dir, backbone="mobilenet_050", weights=None))
    assert other.dim == 512 and first.dim == 256
    assert not np.allclose(np.asarray(random.val), np.asarray(first.val))
    assert not np.allclose(np.asarray(bigger.val), np.asarray(first.val))

    # Same file names, one image replaced by another picture: new data, new features.
    victim = sorted((small_folder / "train" / "ants").iterdir())[0]
    before = _cache(data, cache_dir)
    assert not before.reused  # the backbone changed in between, so this one was recomputed
    shutil.copy(sorted((small_folder / "train" / "bees").iterdir())[0], victim)
    changed = check_fresh(_cache(load_data(f"folder:{small_folder}"), cache_dir))
    assert not np.allclose(np.asarray(changed.train[0][0]), np.asarray(before.train[0][0]))
    # Only the modification time changes: still not trusted.
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    check_fresh(_cache(load_data(f"folder:{small_folder}"), cache_dir))
    # A new image in a class folder.
    shutil.copy(sorted((small_folder / "val" / "bees").iterdir())[0], small_folder / "train" / "bees" / "new.jpg")
    grown = check_fresh(_cache(load_data(f"folder:{small_folder}"), cache_dir))
    assert len(grown.train[0]) == 13
    assert _cache(load_data(f"folder:{small_folder}"), cache_dir).reused


@pytest.mark.parametrize("gradual", [False, True])
def test_xla_compiles_the_cached_stages_and_says_when_a_stage_on_images_cannot(tmp_path, small_folder, capfd,
                                                                                 gradual):
    """`jit_compile`: stage 1 (head on features) and stage 2 on cached activations compile with XLA.
    Gradual unfreezing trains the whole classifier on images, through the augmentation's random zoom and
    rotation, which XLA cannot compile: that stage trains without it and says so in one tfl line, not
    with Keras' warning."""
    import warnings

    import keras

    from tfl.training.trainer import Trainer

    class JitSeen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_begin(self, logs=None):
            self.seen.append((self.model.name, self.model.jit_compile))

    cfg = _config(small_folder, 1, 1)
    cfg.jit_compile, cfg.model.augment, cfg.augment_copies, cfg.stage2.gradual = True, True, 1, gradual
    seen = JitSeen()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(cfg, str(tmp_path / "run"), verbose=0, report=False, callbacks=[seen]).fit()
    err = capfd.readouterr().err
    assert not [w for w in caught if "jit_compile" in str(w.message)]
    assert seen.seen[0] == ("head", True)
    if gradual:
        assert seen.seen[1] == ("tfl_classifier", False), seen.seen
        assert ("stage 2: XLA (--xla, jit_compile) is off for this stage: it trains on images through "
                "RandomRotation, RandomZoom, which XLA cannot compile") in err
    else:
        assert seen.seen[1][1] is True and seen.seen[1][0] != "tfl_classifier", seen.seen
        assert "is off for this stage" not in err


def test_a_model_is_traced_once_for_its_latency_and_its_feature_pass(small_folder):
    """`tfl pick` times batch-1 latency through the function its feature pass then runs: one trace per model
    (tracing a backbone takes seconds), and each model keeps its own functions."""
    from tfl.models import classifier as model_lib
    from tfl.selection import latency
    from tfl.training.activations import extractors

    data = load_data(f"folder:{small_folder}")
    model = model_lib.build_model(ModelConfig(backbone="mobilenet_025", image_size=64, augment=False),
                                  data.num_classes, seed=0)
    plain, augmented, dim = extractors(model)
    assert extractors(model)[0] is plain and augmented is None and dim == 256
    measured = latency.measure(plain, 64, 8, batch=False)
    feats = ActivationStore(cache_dir=None).features(model, data, 64, 8)
    assert plain.experimental_get_tracing_count() == 1
    assert measured.batch1_ms > 0 and feats.val.shape == (len(data.val), 256)
    other = model_lib.build_model(ModelConfig(backbone="mobilenet_025", image_size=64), data.num_classes, seed=0)
    assert extractors(other)[0] is not plain and extractors(other)[1] is not None  # with its augmentation
