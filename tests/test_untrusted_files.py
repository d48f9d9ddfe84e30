"""Files tfl cannot trust: a feature cache truncated or edited on disk, model files and config.json from
someone else. Each is made by the test (real caches, real Keras models, real zips), and each ends in one line:
recomputed, or refused before anything in the file runs.
"""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from helpers import run_tfl

from tfl.config import ModelConfig, TrainConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, hymenoptera):
    """6 train and 3 validation images per class of hymenoptera."""
    root = tmp_path_factory.mktemp("tiny")
    for cls in ("ants", "bees"):
        names = sorted(os.listdir(os.path.join(hymenoptera, "train", cls)))[:9]
        for split, part in (("train", names[:6]), ("val", names[6:])):
            os.makedirs(root / split / cls)
            for n in part:
                shutil.copy(os.path.join(hymenoptera, "train", cls, n), root / split / cls / n)
    return str(root)


def test_a_truncated_or_edited_feature_cache_is_recomputed_with_one_line(tiny_data, tmp_path, capsys):
    from tfl.data.loading import load_data
    from tfl.models import classifier as model_lib
    from tfl.training.activations import ActivationStore

    data = load_data(f"folder:{tiny_data}")
    model = model_lib.build_model(ModelConfig(weights=None, image_size=32, augment=False), 2, seed=0)
    cache_dir = str(tmp_path / "features")

    def features():
        return ActivationStore(cache_dir=cache_dir, memory_budget=0).features(model, data, 32, 4)

    first = features()
    assert first.on_disk and not first.reused
    expected = np.array(first.train[0]), np.array(first.val)
    assert features().reused
    capsys.readouterr()

    train0 = os.path.join(first.folder, "train0.npy")
    size = os.path.getsize(train0)
    with open(train0, "r+b") as f:  # a copy cut short, a full disk
        f.truncate(size - 100)
    again = features()
    assert not again.reused
    lines = [line for line in capsys.readouterr().err.splitlines() if "feature cache" in line]
    assert lines == [f"[tfl] feature cache {first.folder} is damaged (train0.npy has {size - 100:,} bytes, "
                     f"{size:,} were written): computing it again"]
    np.testing.assert_allclose(np.asarray(again.train[0]), expected[0], rtol=1e-5, atol=1e-6)

    val = os.path.join(first.folder, "val.npy")
    with open(val, "r+b") as f:  # same size, other numbers: only the checksum tells
        f.seek(-64, os.SEEK_END)
        f.write(np.full(16, 1e6, "<f4").tobytes())
    edited = features()
    assert not edited.reused
    lines = [line for line in capsys.readouterr().err.splitlines() if "feature cache" in line]
    assert lines == [f"[tfl] feature cache {first.folder} is damaged (val.npy changed since it was written "
                     "(checksum)): computing it again"]
    np.testing.assert_allclose(np.asarray(edited.val), expected[1], rtol=1e-5, atol=1e-6)
    assert features().reused  # and the recomputed cache is trusted again


def _run_folder(path, model, class_names=("ants", "bees"), data=None):
    """A run folder as tfl writes one, around `model` (a Keras model or the bytes of a .keras file)."""
    os.makedirs(path)
    config = TrainConfig()
    if data:
        config.data.source = f"folder:{data}"
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(config.to_json())
    with open(os.path.join(path, "class_names.json"), "w") as f:
        json.dump(list(class_names), f)
    target = os.path.join(path, "model.keras")
    if isinstance(model, bytes):
        with open(target, "wb") as f:
            f.write(model)
    else:
        model.save(target)
    return path


def _one_line_refusal(proc, *words):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfl:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    return lines[0]


@pytest.fixture(scope="module")
def photo(hymenoptera):
    folder = os.path.join(hymenoptera, "val", "ants")
    return os.path.join(folder, sorted(os.listdir(folder))[0])


def test_a_model_with_a_lambda_layer_is_refused_before_any_of_it_runs(tiny_data, tmp_path, photo):
    import keras

    marker = tmp_path / "ran.txt"

    def leave_a_mark(x, path=str(marker)):
        open(path, "w").close()  # what someone else's code could do instead: anything
        return x

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Lambda(leave_a_mark, name="their_code")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    run = _run_folder(str(tmp_path / "run"), keras.Model(inputs, outputs), data=tiny_data)
    marker.unlink()  # building the model ran it once, here
    for args in (["predict", run, photo], ["evaluate", run], ["export", run, "--out", str(tmp_path / "exp")],
                 ["report", run]):
        line = _one_line_refusal(run_tfl(*args, check=False), os.path.join(run, "model.keras"),
                                 "a Lambda layer (it runs Python code) (layer their_code)")
        assert line.startswith("tfl: error: ") and "refused to load it" in line
    assert not marker.exists()
    assert not os.path.exists(tmp_path / "exp")


def _keras_zip(config):
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"")
    return buf.getvalue()


@pytest.mark.parametrize("case,words", [
    # A config naming a function outside Keras: Keras would import the module and look the name up.
    ("os_system", ["system from os, which is neither Keras nor tfl"]),
    # A layer class from someone's own package, registered with Keras under their name.
    ("custom_layer", ["MyLayer from their_package.layers, which is neither Keras nor tfl"]),
    # tfl's own layer, pointed at a backbone tfl does not have.
    ("tfl_unknown_backbone", ["tfl's preprocessing for an unknown backbone 'no_such_net'"]),
    # Not a model at all.
    ("not_a_zip", ["is not a Keras model file tfl can read"]),
])
def test_objects_from_outside_keras_and_tfl_are_refused_in_one_line(tmp_path, photo, case, words):
    marker = tmp_path / "ran.txt"
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 2}}
    if case == "os_system":
        layer = {"module": "keras.layers", "class_name": "Activation", "registered_name": None,
                 "config": {"name": "act", "activation": {"module": "os", "class_name": "system",
                                                          "config": f"touch {marker}", "registered_name": "system"}}}
    elif case == "custom_layer":
        layer = {"module": "their_package.layers", "class_name": "MyLayer", "registered_name": "Custom>MyLayer",
                 "config": {"name": "mine"}}
    elif case == "tfl_unknown_backbone":
        layer = {"module": "tfl.models.classifier", "class_name": "BackbonePreprocess",
                 "registered_name": "tfl>BackbonePreprocess", "config": {"name": "preprocess",
                                                                         "backbone": "no_such_net"}}
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "m", "layers": [{"module": "keras.layers", "class_name": "InputLayer",
                                                  "registered_name": None,
                                                  "config": {"batch_shape": [None, 32, 32, 3]}}, layer]}}
    content = b"PK not really" if case == "not_a_zip" else _keras_zip(config)
    run = _run_folder(str(tmp_path / "run"), content)
    _one_line_refusal(run_tfl("predict", run, photo, check=False), os.path.join(run, "model.keras"), *words)
    assert not marker.exists()


def test_tfl_own_models_still_load(tmp_path, photo):
    """The check refuses nothing tfl itself writes: a real classifier (augmentation, preprocessing, backbone)."""
    from tfl.models import classifier as model_lib
    from tfl.models import trust

    model = model_lib.build_model(ModelConfig(backbone="mobilenet_v3_small", weights=None, image_size=32), 2)
    run = _run_folder(str(tmp_path / "run"), model)
    trust.check_model_file(os.path.join(run, "model.keras"))  # Keras ops layers, Rescaling, our preprocessing
    proc = run_tfl("predict", run, photo, "--json")
    assert json.loads(proc.stdout)[0]["label"] in ("ants", "bees")


@pytest.mark.parametrize("edit,words", [
    (lambda c: c["stage1"].update(epochs="ten"), "stage1.epochs must be an integer, got 'ten'"),
    (lambda c: c["data"].update(strict=1), "data.strict must be true or false, got 1"),
    (lambda c: c["model"]["head"].update(dense=[64, "x"]), "model.head.dense must be a list of integers"),
    (lambda c: c.update(model=["mobilenet_025"]), "model must be a JSON object"),
    (lambda c: c.update(exploit="rm -rf /"), "unknown TrainConfig keys: exploit"),
])
def test_config_json_values_outside_their_types_are_refused_in_one_line(tiny_data, tmp_path, edit, words):
    run = str(tmp_path / "run")
    os.makedirs(run)
    config = TrainConfig().to_dict()
    config["data"]["source"] = f"folder:{tiny_data}"
    edit(config)
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    line = _one_line_refusal(run_tfl("train", "--resume", run, check=False), os.path.join(run, "config.json"), words)
    assert line.endswith("fix the file or start a new run")
    line = _one_line_refusal(run_tfl("train", "--config", os.path.join(run, "config.json"), "--out",
                                     str(tmp_path / "other"), check=False), "--config", words)
    assert not os.path.exists(tmp_path / "other")


def test_a_class_names_file_that_is_not_a_list_of_names_is_refused(tmp_path, photo):
    import keras

    inputs = keras.Input((32, 32, 3), name="image")
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    run = _run_folder(str(tmp_path / "run"), keras.Model(inputs, outputs), class_names=({"ants": 1},))
    _one_line_refusal(run_tfl("predict", run, photo, check=False), "class_names.json is not a list of class names")
