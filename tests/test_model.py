"""The classifier graph: preprocessing inside, BatchNorm in inference mode, unfreezing rules."""

import numpy as np
import pytest

from tfl.config import HeadConfig, ModelConfig
from tfl.errors import UsageError
from tfl.models import backbones
from tfl.models import classifier as model_lib


@pytest.fixture(scope="module")
def small_model():
    cfg = ModelConfig(backbone="mobilenet_025", weights=None, image_size=64,
                      head=HeadConfig(dense=[16], dropout=0.3))
    return model_lib.build_model(cfg, num_classes=3, seed=1)


def test_structure_and_output(small_model):
    m = small_model
    assert m.input.name.startswith("image") and m.input_shape == (None, 64, 64, 3)
    assert m.output_shape == (None, 3)
    assert [layer.name for layer in m.layers][:3] == ["image", "augmentation", "preprocess"]
    probs = m(np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"), training=False)
    assert probs.dtype.name == "float32"
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)


def test_augmentation_only_in_training(small_model):
    x = np.random.RandomState(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    a, b = small_model(x, training=False), small_model(x, training=False)
    np.testing.assert_array_equal(a, b)
    aug = small_model.get_layer("augmentation")
    assert not np.allclose(aug(x, training=True), x)


def test_multi_label_head_uses_sigmoid():
    cfg = ModelConfig(backbone="mobilenet_025", weights=None, image_size=32, augment=False,
                      head=HeadConfig(multi_label=True))
    m = model_lib.build_model(cfg, 4)
    y = m(np.zeros((1, 32, 32, 3), "float32"))
    assert m.get_layer("head").get_layer("predictions").activation.__name__ == "sigmoid"
    assert y.shape == (1, 4)


def test_preprocessing_is_the_backbones_own(small_model):
    x = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    np.testing.assert_allclose(small_model.get_layer("preprocess")(x), [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)


def test_unfreeze_specs(small_model):
    backbone = model_lib.backbone_of(small_model)
    n = len(backbone.layers)
    ids = backbones.block_ids("mobilenet_025", backbone)
    assert model_lib.parse_unfreeze("all", backbone, ids) == list(range(n))
    assert model_lib.parse_unfreeze("none", backbone, ids) == []
    assert model_lib.parse_unfreeze("10", backbone, ids) == list(range(n - 10, n))
    assert len(model_lib.parse_unfreeze("0.5", backbone, ids)) == round(n / 2)
    assert model_lib.parse_unfreeze("50%", backbone, ids) == model_lib.parse_unfreeze("0.5", backbone, ids)
    two = model_lib.parse_unfreeze("2blocks", backbone, ids)
    assert two and {ids[i] for i in two} == {max(ids), max(ids) - 1}
    for bad, match in (("999", "layers"), ("lots", "is not auto, all"), ("99blocks", "blocks"), ("1.5", "fraction")):
        with pytest.raises(UsageError, match=match):
            model_lib.parse_unfreeze(bad, backbone, ids)


def test_unfreeze_never_trains_batchnorm(small_model):
    names = model_lib.unfreeze(small_model, "all")
    backbone = model_lib.backbone_of(small_model)
    bns = [layer for layer in backbone.layers if model_lib.is_batchnorm(layer)]
    assert bns and not any(layer.trainable for layer in bns)
    assert names and all(not model_lib.is_batchnorm(backbone.get_layer(n)) for n in names)
    model_lib.freeze_backbone(small_model)
    assert not backbone.trainable_weights


def test_saved_model_reloads_in_safe_mode(small_model, tmp_path):
    import keras

    path = str(tmp_path / "m.keras")
    small_model.save(path)
    model_lib.register_layers()
    back = keras.saving.load_model(path, safe_mode=True)
    x = np.random.RandomState(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(back(x, training=False), small_model(x, training=False), atol=1e-6)
