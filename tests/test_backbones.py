"""Tests for tfl.models.backbones: registry, building, weights, preprocessing, blocks.

Heavy architectures are skipped unless TFL_SLOW_TESTS=1 so that the module
stays well under 3 minutes on 2 shared CPU cores.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import helpers
import numpy as np
import pytest

from tfl.models import backbones as B

REPO = pathlib.Path(helpers.REPO)
SHARED_WEIGHTS = pathlib.Path(helpers.SHARED) / "keras-weights"
MOBILENET_025_H5 = SHARED_WEIGHTS / "models" / "mobilenet_2_5_224_tf_no_top.h5"
# Heavy models build by default (the registry promise is that every entry builds); TFL_FAST_TESTS=1 skips them.
RUN_SLOW = os.environ.get("TFL_FAST_TESTS") != "1"
# Each takes ~5-40 s to build on a loaded 2-core box; one smaller member of
# every family still runs by default.
SLOW = frozenset({
    "nasnet_large", "convnext_large", "convnext_xlarge", "densenet169",
    "densenet201", "inception_resnet_v2", "efficientnet_b5", "efficientnet_b6",
    "efficientnet_b7", "efficientnet_v2_m", "efficientnet_v2_l", "resnet152",
    "resnet152_v2", "convnext_base", "efficientnet_b4", "resnet101_v2",
    "efficientnet_v2_s", "convnext_small", "resnet101", "efficientnet_b3",
})
# Expected block counts (stem = block 0) for a few representative models.
EXPECTED_BLOCKS = {
    "mobilenet_025": 14, "mobilenet_v2": 18, "mobilenet_v3_small": 12,
    "efficientnet_b0": 8, "efficientnet_v2_b0": 7, "resnet50": 17,
    "resnet50_v2": 17, "convnext_tiny": 22, "densenet121": 59, "xception": 14,
    "inception_v3": 12, "nasnet_mobile": 17, "vgg16": 6,
}


def _kernel_from_h5(path, layer="conv1"):
    import h5py

    with h5py.File(path, "r") as f:
        return np.array(f[f"{layer}/{layer}/kernel:0"])


@pytest.fixture(autouse=True)
def _clear_keras():
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()


def test_registry_names_and_fields():
    import keras

    specs = B.list_backbones()
    names = [s.name for s in specs]
    assert len(specs) >= 30
    assert len(set(names)) == len(names)
    for s in specs:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", s.name), s.name
        assert hasattr(keras.applications, s.constructor), s.constructor
        if s.preprocess is not None:
            assert hasattr(getattr(keras.applications, s.preprocess),
                           "preprocess_input")
        assert 32 <= s.min_size <= s.default_size
        assert B.get_backbone(s.name) is s
        hash(s)  # usable as a dict key / in sets
    assert B.get_backbone("mobilenet_025").kwargs == {"alpha": 0.25}


def test_import_does_not_load_tensorflow():
    code = ("import sys, tfl.models.backbones as b; b.list_backbones(); "
            "b.imagenet_weights_cached('mobilenet'); "
            "print([m for m in ('keras', 'tensorflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_unknown_backbone_suggests_close_match():
    with pytest.raises(B.UnknownBackboneError) as info:
        B.get_backbone("mobilnet_025")
    msg = str(info.value)
    assert msg.startswith("unknown backbone 'mobilnet_025'; did you mean: "
                          "mobilenet_025")
    assert msg.endswith("? (tfl backbones lists them)")
    assert isinstance(info.value, ValueError)
    with pytest.raises(B.UnknownBackboneError, match="tfl backbones"):
        B.get_backbone("zzz")


def test_image_size_below_minimum():
    with pytest.raises(ValueError) as info:
        B.build_backbone("mobilenet_025", 16)
    assert str(info.value) == ("image size 16 is below mobilenet_025's "
                               "minimum of 32; use --image-size 32 or more")
    with pytest.raises(ValueError, match="minimum of 75"):
        B.build_backbone("inception_v3", 74)


def test_imagenet_weights_file_names():
    f = B.imagenet_weights_file
    assert f("mobilenet_025") == "mobilenet_2_5_224_tf_no_top.h5"
    assert f("mobilenet_050", 160) == "mobilenet_5_0_160_tf_no_top.h5"
    assert f("mobilenet", 100) == "mobilenet_1_0_224_tf_no_top.h5"
    assert f("mobilenet_v2_035", 96) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5")
    assert f("mobilenet_v2_130") == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.3_224_no_top.h5")
    assert f("mobilenet_v3_small") == (
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    assert f("mobilenet_v3_large_minimalistic", 160) == (
        "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5")
    assert f("efficientnet_b0") == "efficientnetb0_notop.h5"
    assert f("efficientnet_v2_s") == "efficientnetv2-s_notop.h5"
    assert f("resnet50") == (
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert f("resnet101_v2") == (
        "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert f("convnext_xlarge") == "convnext_xlarge_notop.h5"
    assert f("nasnet_large") == "nasnet_large_no_top.h5"


def test_missing_weights_name_the_file_that_serves_every_size():
    """Offline, with no cached file, the one line names the 224 file (no-top weights serve any size)."""
    # None of these has a weights file in ../shared, and none ships with tfl.
    for name, size in (("mobilenet_050", 128), ("mobilenet_v2_050", 96),
                       ("mobilenet_v3_small_minimalistic", 64), ("vgg16", 32)):
        spec = B.get_backbone(name)
        with pytest.raises(B.WeightsUnavailableError) as info:
            B.build_backbone(spec, size, "imagenet")
        assert B.imagenet_weights_file(spec, None) in str(info.value), name
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", [
    pytest.param(s.name, marks=[pytest.mark.slow, pytest.mark.skipif(
        not RUN_SLOW, reason="heavy model skipped by TFL_FAST_TESTS=1")])
    if s.name in SLOW else s.name
    for s in B.list_backbones()])
def test_build_every_backbone_small(name):
    spec = B.get_backbone(name)
    size = spec.min_size
    model = B.build_backbone(spec, size)
    out = model(np.zeros((1, size, size, 3), "float32"))
    assert len(out.shape) == 4 and out.shape[0] == 1
    ids = B.block_ids(spec, model)
    assert len(ids) == len(model.layers)
    assert ids[0] == 0
    assert all(a <= b for a, b in zip(ids, ids[1:]))
    assert sorted(set(ids)) == list(range(B.num_blocks(spec, model)))
    assert B.num_blocks(spec, model) >= 3
    if name in EXPECTED_BLOCKS:
        assert B.num_blocks(spec, model) == EXPECTED_BLOCKS[name]
    # What `tfl backbones` shows without building the model is right.
    assert B.stats(spec) == {"params": model.count_params(), "blocks": B.num_blocks(spec, model)}


def test_mobilenet_025_is_keras_mobilenet_alpha_025():
    import keras

    ours = B.build_backbone("mobilenet_025", 224)
    ref = keras.applications.MobileNet(alpha=0.25, include_top=False,
                                       weights=None, input_shape=(224, 224, 3))
    # Input layers get auto-generated (session-unique) names; skip them.
    assert ([layer.name for layer in ours.layers[1:]]
            == [layer.name for layer in ref.layers[1:]])
    assert ([tuple(w.shape) for w in ours.weights]
            == [tuple(w.shape) for w in ref.weights])
    assert ours.output.shape == ref.output.shape == (None, 7, 7, 256)


def test_block_ids_mobilenet_layout():
    model = B.build_backbone("mobilenet_025", 64)
    by_name = dict(zip([layer.name for layer in model.layers],
                       B.block_ids("mobilenet_025", model)))
    assert by_name["conv1"] == 0
    assert by_name["conv_dw_1"] == by_name["conv_pw_1_relu"] == 1
    assert by_name["conv_pad_2"] == by_name["conv_dw_2"] == 2
    assert by_name["conv_pw_13_relu"] == 13


def test_weights_path_loads_at_other_size():
    assert MOBILENET_025_H5.is_file(), f"{MOBILENET_025_H5} is missing: the tests need ../shared beside the checkout"
    model = B.build_backbone("mobilenet_025", 128, str(MOBILENET_025_H5))
    assert model.input_shape == (None, 128, 128, 3)
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(),
                                  _kernel_from_h5(MOBILENET_025_H5))
    with pytest.raises(FileNotFoundError):
        B.build_backbone("mobilenet_025", 128, "/nonexistent/w.h5")


_IMAGENET_SCRIPT = textwrap.dedent("""
    import json, sys, time, numpy as np
    from tfl.models import backbones as B
    res = {"cached_before_import": [
        B.imagenet_weights_cached("mobilenet_025"),
        B.imagenet_weights_cached("mobilenet_050"),
        B.imagenet_weights_cached("mobilenet_025", 160)]}
    import keras
    res["keras_home"] = keras.src.backend.config.keras_home()
    for size in (224, 160):
        t = time.time()
        m = B.build_backbone("mobilenet_025", size, "imagenet")
        res[f"kernel_{size}"] = m.get_layer("conv1").kernel.numpy().tolist()
        res[f"shape_{size}"] = list(m.input_shape[1:])
        res[f"seconds_{size}"] = time.time() - t
    t = time.time()
    try:
        B.build_backbone("mobilenet_050", 224, "imagenet")
        res["error"] = None
    except B.WeightsUnavailableError as e:
        res["error"] = str(e)
    res["error_seconds"] = time.time() - t
    res["cached_after"] = B.imagenet_weights_cached("mobilenet_025", 160)
    print("RESULT " + json.dumps(res))
""")


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    """Runs the imagenet checks in a fresh interpreter with KERAS_HOME set
    (keras reads KERAS_HOME once, at import)."""
    assert MOBILENET_025_H5.is_file(), f"{MOBILENET_025_H5} is missing: the tests need ../shared"
    home = tmp_path_factory.mktemp("keras_home")
    shutil.copytree(SHARED_WEIGHTS / "models", home / "models")
    env = dict(os.environ, KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(
                   [str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _IMAGENET_SCRIPT], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    res = json.loads(lines[-1][len("RESULT "):])
    res["home"] = str(home)
    return res


def test_imagenet_cache_detection(imagenet_run):
    assert imagenet_run["cached_before_import"] == [True, False, False]
    assert imagenet_run["keras_home"] == imagenet_run["home"]
    assert imagenet_run["cached_after"] is False  # no 160 file was fetched


def test_imagenet_weights_load_real_kernel(imagenet_run):
    expected = _kernel_from_h5(MOBILENET_025_H5)
    for size in (224, 160):  # 160 falls back to the cached 224 file
        assert imagenet_run[f"shape_{size}"] == [size, size, 3]
        np.testing.assert_array_equal(
            np.array(imagenet_run[f"kernel_{size}"], "float32"), expected)


def test_imagenet_weights_unavailable_is_one_line(imagenet_run):
    msg = imagenet_run["error"]
    assert msg is not None
    assert "\n" not in msg
    assert "mobilenet_5_0_224_tf_no_top.h5" in msg
    assert "mobilenet_050" in msg and "--weights PATH" in msg
    assert imagenet_run["home"] in msg
    assert imagenet_run["error_seconds"] < 10


def test_preprocess_numpy():
    x = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    x_copy = x.copy()
    np.testing.assert_allclose(B.preprocess_input("mobilenet_025", x),
                               [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    np.testing.assert_array_equal(x, x_copy)  # caller's array untouched
    assert B.preprocess_input("efficientnet_b0", x) is x
    assert B.preprocess_input("convnext_tiny", x) is x

    import keras

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(
        B.preprocess_input("resnet50", img),
        keras.applications.resnet50.preprocess_input(img.copy()), rtol=1e-6)
    np.testing.assert_array_equal(
        B.preprocess_input("resnet50_v2", img),
        keras.applications.resnet_v2.preprocess_input(img.copy()))


def test_preprocess_inside_layer_graph_mode():
    import keras
    import tensorflow as tf

    class Pre(keras.layers.Layer):
        def __init__(self, backbone, **kwargs):
            super().__init__(**kwargs)
            self.backbone = backbone

        def call(self, x):
            return B.preprocess_input(self.backbone, x)

    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, (3, 4, 4, 3)).astype("float32")
    for name, module in (("resnet50", keras.applications.resnet50),
                         ("densenet121", keras.applications.densenet),
                         ("mobilenet", keras.applications.mobilenet)):
        inp = keras.Input((4, 4, 3))
        model = keras.Model(inp, Pre(name)(inp))
        got = model.predict(img, verbose=0)  # traced with tf.function
        np.testing.assert_allclose(got, module.preprocess_input(img.copy()),
                                   rtol=1e-5, atol=1e-4)
        graph_fn = tf.function(lambda t, n=name: B.preprocess_input(n, t))
        np.testing.assert_allclose(graph_fn(tf.constant(img)).numpy(), got,
                                   rtol=1e-6, atol=1e-5)
