"""Family-specific correctness with every real ImageNet weights file in ../shared/keras-weights.

For MobileNet v1 (0.25, 0.75) and MobileNetV2 (1.0, 0.35):

* the preprocessing is the one the weights were trained with: the 0.75 file
  with its 1000-class top recognises ants and bees (ImageNet classes 310 and
  309) in hymenoptera's photos when fed through tfl's own decoding, resizing
  and preprocessing layer;
* sizes other than 224 load the 224 file (no-top weights do not depend on the
  input size): every weight equals Keras' own 224 build;
* `--unfreeze Nblocks` cuts at true block boundaries: a single tensor crosses
  the cut for every N, and the cut opens the block Keras names;
* BatchNorm's ImageNet statistics are the same after both stages as in the
  file, whether stage 2 trains on cached activations or on images.

KERAS_HOME is the session's copy of ../shared/keras-weights (conftest.py).
"""

import os

import helpers
import numpy as np
import pytest

from tfl.models import backbones as B

REAL = ("mobilenet_025", "mobilenet_075", "mobilenet_v2", "mobilenet_v2_035")
HYMENOPTERA = os.path.join(helpers.SHARED, "datasets", "hymenoptera_data")
ANT, BEE = 310, 309  # ImageNet class indices


def test_every_real_file_is_in_the_keras_cache():
    # The other tests would prove nothing if a file were missing and random weights were built.
    for name in REAL:
        assert B.imagenet_weights_cached(name), f"{B.imagenet_weights_file(name)} is not in KERAS_HOME"


def test_mobilenet_075_top_recognises_ants_and_bees_through_tfl_preprocessing():
    import keras

    import tfl
    from tfl.models import classifier

    data = tfl.load_data(f"folder:{HYMENOPTERA}")
    top = keras.applications.MobileNet(alpha=0.75, include_top=True, weights="imagenet",
                                       input_shape=(224, 224, 3))
    pre = classifier.preprocess_layer("mobilenet_075")
    want = {data.class_names.index("ants"): ANT, data.class_names.index("bees"): BEE}
    top1 = top5 = unprocessed5 = n = 0
    for images, labels in data.val.dataset(224, 32):
        # tfl's path: the split's decode + resize (0..255 RGB), then the model's preprocessing layer.
        np.testing.assert_allclose(pre(images).numpy(),
                                   keras.applications.mobilenet.preprocess_input(images.numpy().copy()),
                                   atol=1e-6)
        probs = top(pre(images), training=False).numpy()
        raw = top(images, training=False).numpy()  # without preprocessing: the control
        for p, q, y in zip(probs, raw, labels.numpy()):
            target = want[int(y)]
            top1 += int(p.argmax() == target)
            top5 += int(target in p.argsort()[-5:])
            unprocessed5 += int(target in q.argsort()[-5:])
            n += 1
    # Measured: top-1 0.63, top-5 0.81 on the 153 val photos (ants/bees among 1000 classes);
    # unpreprocessed input: 0.0.
    assert n == 153
    assert top1 / n >= 0.55 and top5 / n >= 0.75, (top1 / n, top5 / n)
    assert unprocessed5 / n < 0.2


@pytest.mark.parametrize("name,size", [("mobilenet_025", 128), ("mobilenet_075", 160),
                                       ("mobilenet_v2", 128), ("mobilenet_v2_035", 96)])
def test_imagenet_weights_load_at_other_sizes_from_the_224_file(name, size):
    import keras

    spec = B.get_backbone(name)
    assert not B.imagenet_weights_cached(name, size)  # Keras would ask for a file that is not there
    ours = B.build_backbone(name, size, "imagenet")
    ref = getattr(keras.applications, spec.constructor)(include_top=False, weights="imagenet",
                                                         input_shape=(224, 224, 3), **spec.kwargs)
    assert ours.input_shape == (None, size, size, 3)
    assert len(ours.weights) == len(ref.weights)
    for a, b in zip(ours.weights, ref.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize("name,first_layers", [
    # N blocks from the top -> the first layer stage 2 trains.
    ("mobilenet_025", {1: "conv_dw_13", 2: "conv_pad_12", 3: "conv_dw_11", 6: "conv_dw_8", 13: "conv_dw_1"}),
    ("mobilenet_v2", {1: "block_16_expand", 2: "block_15_expand", 3: "block_14_expand", 8: "block_9_expand",
                      16: "block_1_expand", 17: "expanded_conv_depthwise"}),
])
def test_nblocks_cut_at_true_block_boundaries(name, first_layers):
    from tfl.config import ModelConfig, Unfreeze
    from tfl.models import classifier
    from tfl.models.classifier import build_model
    from tfl.training.cut import BottomSplit

    model = build_model(ModelConfig(backbone=name, weights="imagenet", image_size=96), 3)
    backbone = classifier.backbone_of(model)
    ids = B.block_ids(name, backbone)
    for n in range(1, max(ids) + 1):
        unfrozen = Unfreeze.parse(f"{n}blocks").layer_indices(len(backbone.layers), ids)
        split = BottomSplit(model, unfrozen)
        # A cut inside a block (e.g. across a V2 residual) would need two tensors.
        assert split.single, f"{n}blocks of {name} cuts inside a block: {split.describe()}"
        first = backbone.layers[min(unfrozen)].name
        if n in first_layers:
            assert first == first_layers[n], (n, first)
        # Everything from the cut up is unfrozen, nothing below it.
        assert unfrozen == list(range(min(unfrozen), len(backbone.layers)))


@pytest.mark.parametrize("unfreeze,inputs", [("1blocks", "activations"), ("all", "images")])
def test_batchnorm_statistics_stay_frozen_in_both_stages(tmp_path, unfreeze, inputs):
    import json

    import tfl
    from tfl.models import classifier

    small = helpers.small_copy(HYMENOPTERA, tmp_path / "data", per_class=12)
    result = tfl.fine_tune(data=f"folder:{small}", backbone="mobilenet_v2_035", image_size=96, epochs=2,
                           fine_tune_epochs=2, unfreeze=unfreeze, out=str(tmp_path / "run"), verbose=0,
                           seed=3)
    with open(os.path.join(result.run_dir, "state.json"), encoding="utf-8") as f:
        assert json.load(f)["plan"]["stage2"]["inputs"] == inputs
    reference = B.build_backbone("mobilenet_v2_035", 96, "imagenet")
    trained = classifier.backbone_of(tfl.load_model(result.run_dir))
    moved = 0
    for layer, ref in zip(trained.layers, reference.layers):
        if classifier.is_batchnorm(layer):
            # gamma, beta, moving mean and variance, in that order in both
            for w, r in zip(layer.weights, ref.weights):
                np.testing.assert_array_equal(w.numpy(), r.numpy(), err_msg=w.path)
        elif layer.weights and not np.array_equal(layer.weights[0].numpy(), ref.weights[0].numpy()):
            moved += 1
    assert result.best_stage == 2 or result.stage2  # stage 2 ran
    assert moved >= 1  # the control: the unfrozen convolutions did train
