"""`tfl predict --engine`: LiteRT (XNNPACK) against Keras on real images, for run folders and exports.

One tiny real run (mobilenet_025 with ImageNet weights at 96 px, one stage 1
epoch on 16 + 16 hymenoptera images) and one export of it serve every test.
"""

import json
import os
import shutil
import subprocess
import sys

# The test extra installs ai-edge-litert, so a missing package fails here instead of skipping every test.
import ai_edge_litert  # noqa: E402,F401
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import REPO

TFLITE = "model_float32.tflite"


def cli(*args):
    """The real `tfl` command line, in this process (TensorFlow is already imported): (status, stdout)."""
    from tfl.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, hymenoptera):
    from tfl.config import TrainConfig
    from tfl.training.trainer import Trainer

    data = tmp_path_factory.mktemp("data")
    for split, n in (("train", 16), ("val", 8)):
        for cls in ("ants", "bees"):
            os.makedirs(data / split / cls)
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))[:n]:
                shutil.copy(os.path.join(hymenoptera, split, cls, name), data / split / cls / name)
    cfg = TrainConfig()
    cfg.data.source = f"folder:{data}"
    cfg.model.image_size = 96
    cfg.stage1.epochs, cfg.stage2.epochs = 1, 0
    return Trainer(cfg, str(tmp_path_factory.mktemp("runs") / "tiny"), verbose=0, report=False).fit().run_dir


@pytest.fixture(scope="module")
def tiny_export(tiny_run, tmp_path_factory):
    """The run exported with a float32 TFLite model (checked by tfl export on the validation split)."""
    import tfl

    return tfl.export(tiny_run, str(tmp_path_factory.mktemp("exports")), name="tiny", tflite=["float32"],
                      verify_images=4)


@pytest.fixture(scope="module")
def photos(shared_dir):
    """Real photos the run never saw: hymenoptera validation images and trashnet (other subjects, sizes)."""
    out = []
    for dataset, split, classes in (("hymenoptera_data", "val", ("ants", "bees")),
                                    ("trashnet_subset", "val", ("glass", "paper"))):
        for cls in classes:
            folder = os.path.join(shared_dir, "datasets", dataset, split, cls)
            out += [os.path.join(folder, f) for f in sorted(os.listdir(folder))[-6:]]
    return out


def _probs(results):
    return np.array([list(r["probabilities"].values()) for r in results])


def test_litert_agrees_with_keras_on_real_images_and_the_run_keeps_the_checked_model(tiny_run, photos):
    from tfl.serving.prediction import Predictor

    keras_results = Predictor(tiny_run, batch_size=8, engine="keras").predict(photos)
    predictor = Predictor(tiny_run, batch_size=8, engine="litert")
    lite_results = predictor.predict(photos)
    assert predictor.engine == "litert"
    assert [r["path"] for r in lite_results] == photos
    assert [r["label"] for r in lite_results] == [r["label"] for r in keras_results]
    assert np.abs(_probs(lite_results) - _probs(keras_results)).max() <= 1e-4
    # Checked against Keras on the first batch of real images when it was made, and kept with that check.
    assert predictor.lite_check["num_images"] == 8 and predictor.lite_check["labels_agree"]
    assert 0 <= predictor.lite_check["max_abs_diff"] <= 1e-4
    path = os.path.join(tiny_run, TFLITE)
    with open(path + ".json") as f:
        record = json.load(f)
    assert record["image_size"] == 96 and record["check"] == predictor.lite_check
    made = os.stat(path).st_mtime_ns

    again = Predictor(tiny_run, engine="litert")  # reuses the kept model: no conversion, no Keras model
    assert again.image_size == 96 and again.lite_check == predictor.lite_check
    assert np.abs(_probs(again.predict(photos)) - _probs(lite_results)).max() <= 1e-6
    assert os.stat(path).st_mtime_ns == made


def test_a_kept_model_that_no_longer_matches_is_made_again(tiny_run, hymenoptera, tmp_path):
    from tfl.serving.prediction import Predictor

    run = str(tmp_path / "copy")
    shutil.copytree(tiny_run, run)
    photo = os.path.join(hymenoptera, "val", "bees", sorted(os.listdir(os.path.join(hymenoptera, "val", "bees")))[0])
    expected = Predictor(run, engine="keras").predict([photo])[0]
    Predictor(run, engine="litert").predict([photo])
    with open(os.path.join(run, TFLITE), "r+b") as f:  # damaged on disk
        f.seek(1000)
        f.write(b"\0" * 64)
    got = Predictor(run, engine="litert").predict([photo])[0]
    assert got["label"] == expected["label"] and abs(got["probability"] - expected["probability"]) <= 1e-4
    with open(os.path.join(run, TFLITE + ".json")) as f:
        assert json.load(f)["check"]["num_images"] == 1  # made again, checked on this request's image


def test_tfl_predict_engine_litert_on_a_run_folder_and_on_exports(tiny_run, tiny_export, photos, tmp_path):
    paths = photos[::3]

    def predicted(folder, engine):
        code, output = cli("predict", folder, *paths, "--engine", engine, "--json")
        assert code == 0, output
        return json.loads(output)

    reference = predicted(tiny_run, "keras")
    # The export without its TFLite file: auto converts the SavedModel in memory, checks it, writes nothing.
    bare = tmp_path / "bare" / "tiny" / "1"
    shutil.copytree(tiny_export.path, bare, ignore=shutil.ignore_patterns("*.tflite"))
    for folder, engine in ((tiny_run, "litert"), (os.path.dirname(tiny_export.path), "litert"),
                           (os.path.dirname(tiny_export.path), "keras"), (str(bare), "auto")):
        got = predicted(folder, engine)
        assert [r["path"] for r in got] == paths
        assert [r["label"] for r in got] == [r["label"] for r in reference], (folder, engine)
        assert np.abs(_probs(got) - _probs(reference)).max() <= 1e-4, (folder, engine)
    assert not any(name.endswith(".tflite") for name in os.listdir(bare))


def test_a_file_that_fails_to_decode_gets_its_error_and_the_others_their_labels(tiny_run, photos, tmp_path):
    from PIL import Image

    from tfl.serving.prediction import Predictor

    # A copy cut short: its header is fine, so the pipeline's decode is what finds it.
    cut = tmp_path / "cut.jpg"
    with open(photos[3], "rb") as f:
        data = f.read()
    cut.write_bytes(data[:len(data) * 6 // 10])
    bmp = tmp_path / "one_bit.bmp"  # Pillow reads it, TensorFlow cannot
    Image.new("1", (40, 30)).save(bmp)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    files = [photos[0], str(cut), photos[1], str(text), str(bmp), photos[2]]
    for engine in ("litert", "keras"):
        results = Predictor(tiny_run, batch_size=2, engine=engine).predict(files)
        assert [r["path"] for r in results] == files
        assert results[1]["error"] == "cannot decode (jpeg::Uncompress failed. Invalid JPEG data or crop window.)"
        assert results[3]["error"] == "a text file, not an image"
        assert results[4]["error"].startswith("cannot decode (Number of channels"), results[4]
        assert all(r["label"] in ("ants", "bees") for r in (results[0], results[2], results[5]))


def test_bad_engine_is_one_usage_line(tiny_run, photos):
    from tfl.errors import UsageError
    from tfl.serving.prediction import Predictor

    proc = subprocess.run([sys.executable, "-m", "tfl", "predict", tiny_run, photos[0], "--engine", "tpu"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tfl: error: Invalid value for '--engine': 'tpu' is not one of 'auto', 'keras', 'litert'. "
        "(see tfl predict --help)"]
    with pytest.raises(UsageError, match=r"^engine= 'tpu': choose from auto, keras, litert$"):
        Predictor(tiny_run, engine="tpu")


# `sys.modules[name] = None` is how Python spells "this package is not there": import fails and
# importlib.util.find_spec answers None, exactly as without the package installed.
_WITHOUT_LITERT = """
import sys
sys.modules["ai_edge_litert"] = None
from tfl.cli import main
main(sys.argv[1:], prog_name="tfl")
"""


def test_without_litert_the_engine_says_how_to_install_it_and_auto_uses_tensorflow(tiny_run, photos):
    def run(*args):
        return subprocess.run([sys.executable, "-c", _WITHOUT_LITERT, "predict", tiny_run, photos[0], *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    proc = run("--engine", "litert")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tfl: error: --engine litert needs the LiteRT package: pip install 'tfl[litert]' "
        "(or pip install ai-edge-litert)"]
    proc = run("--engine", "auto")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\t")[1] in ("ants", "bees")
