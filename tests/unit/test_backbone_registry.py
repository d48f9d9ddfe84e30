"""The backbone registry's lookups, which need no Keras: names, close-match hints, weights file names, stats."""

import pytest

from tfl.errors import UnknownBackboneError, UsageError
from tfl.models import backbones
from tfl.models.backbones import get_backbone, imagenet_weights_file, list_backbones


def test_the_registry():
    names = [spec.name for spec in list_backbones()]
    assert len(names) == 52 and len(set(names)) == 52
    assert names[:4] == ["mobilenet_025", "mobilenet_050", "mobilenet_075", "mobilenet"]
    for name in ("mobilenet_v2_035", "mobilenet_v3_small_minimalistic", "efficientnet_b7", "efficientnet_v2_l",
                 "resnet152_v2", "convnext_xlarge", "densenet201", "inception_resnet_v2", "nasnet_large", "vgg19"):
        assert name in names


@pytest.mark.parametrize("name,expected", [
    ("mobilenet_025", "mobilenet_025"),
    ("MobileNet-025", "mobilenet_025"),
    (" resnet50 ", "resnet50"),
    ("EfficientNet-V2-S", "efficientnet_v2_s"),
])
def test_names_are_normalised(name, expected):
    assert get_backbone(name).name == expected


def test_a_spec_says_how_to_build_the_model():
    spec = get_backbone("mobilenet_025")
    assert (spec.constructor, spec.family, spec.preprocess) == ("MobileNet", "mobilenet", "mobilenet")
    assert dict(spec.kwargs) == {"alpha": 0.25}
    assert (spec.default_size, spec.min_size, spec.weights_sizes) == (224, 32, (128, 160, 192, 224))
    v3 = get_backbone("mobilenet_v3_large_minimalistic")
    assert v3.constructor == "MobileNetV3Large" and v3.preprocess is None
    assert dict(v3.kwargs) == {"alpha": 1.0, "minimalistic": True}
    assert (get_backbone("xception").default_size, get_backbone("xception").min_size) == (299, 71)
    assert get_backbone("efficientnet_b3").default_size == 300


def test_a_spec_is_returned_unchanged():
    spec = get_backbone("resnet50")
    assert get_backbone(spec) is spec


@pytest.mark.parametrize("name,message", [
    ("resnet5", "unknown backbone 'resnet5'; did you mean: resnet50, resnet152, resnet50_v2? "
                "(tfl backbones lists them)"),
    ("effnet_b0", "unknown backbone 'effnet_b0'; did you mean: efficientnet_b0, efficientnet_v2_b0, efficientnet_b7? "
                  "(tfl backbones lists them)"),
    ("zzzz", "unknown backbone 'zzzz' (tfl backbones lists them)"),
])
def test_unknown_names_suggest_close_ones(name, message):
    with pytest.raises(UnknownBackboneError) as info:
        get_backbone(name)
    assert str(info.value) == message
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)  # exit status 2 in the CLI


@pytest.mark.parametrize("name,size,file", [
    # The four files ../shared/keras-weights/models holds, named as Keras caches them.
    ("mobilenet_025", None, "mobilenet_2_5_224_tf_no_top.h5"),
    ("mobilenet_075", 224, "mobilenet_7_5_224_tf_no_top.h5"),
    ("mobilenet_v2_035", None, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"),
    ("mobilenet_v2", None, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    # MobileNet v1/v2 have a file per resolution; other sizes use the 224 one.
    ("mobilenet_025", 160, "mobilenet_2_5_160_tf_no_top.h5"),
    ("mobilenet_025", 200, "mobilenet_2_5_224_tf_no_top.h5"),
    ("mobilenet_v2_140", 96, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_96_no_top.h5"),
    # One file for every size.
    ("resnet50", 160, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("resnet101_v2", None, "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("efficientnet_b3", None, "efficientnetb3_notop.h5"),
    ("efficientnet_v2_s", None, "efficientnetv2-s_notop.h5"),
    ("mobilenet_v3_small_075", None, "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5"),
    ("convnext_tiny", None, "convnext_tiny_notop.h5"),
    ("nasnet_mobile", None, "nasnet_mobile_no_top.h5"),
    ("inception_v3", 299, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
])
def test_imagenet_weights_file_names(name, size, file):
    assert imagenet_weights_file(name, size) == file


def test_weights_file_of_an_unknown_backbone():
    with pytest.raises(UnknownBackboneError):
        imagenet_weights_file("resnet5")


def test_stats_cover_every_backbone():
    assert backbones.stats("mobilenet_025") == {"blocks": 14, "params": 218544}
    for spec in list_backbones():
        stats = backbones.stats(spec)
        assert stats["blocks"] > 1 and stats["params"] > 100_000, spec.name
    stats = backbones.stats("resnet50")
    stats["blocks"] = -1  # a copy: the cache is not changed through it
    assert backbones.stats("resnet50")["blocks"] > 1
