"""`tfl export`: SavedModels that take image bytes, verified, in TF Serving's layout.

One real export of the session's trained hymenoptera run (preceded by one
that is SIGKILLed mid-write) serves every test here.
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

NAME = "ants_bees"


def cli(*args):
    """The real `tfl` command line, in this process (TensorFlow is already imported)."""
    from tfl.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def val_images(hymenoptera, per_class=3):
    root = os.path.join(hymenoptera, "val")
    return [os.path.join(root, c, f) for c in ("ants", "bees")
            for f in sorted(os.listdir(os.path.join(root, c)))[:per_class]]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """Kills a `tfl export` subprocess while it writes, then exports the run for real (with dynamic TFLite)."""
    out = tmp_path_factory.mktemp("exports")
    model_dir = out / NAME
    proc = subprocess.Popen([sys.executable, "-m", "tfl", "export", trained_run.run_dir, "--out", str(out),
                             "--name", NAME], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            tmp = [e for e in (os.listdir(model_dir) if model_dir.is_dir() else []) if e.startswith(".tmp-")]
            if tmp and os.listdir(model_dir / tmp[0]):  # the SavedModel is being written
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"export ended before it could be killed:\n{proc.stdout.read().decode()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after_kill = {e: sorted(os.listdir(model_dir / e)) for e in os.listdir(model_dir)}

    code, output = cli("export", trained_run.run_dir, "--out", out, "--name", NAME, "--tflite", "dynamic", "--json")
    assert code == 0, output
    return {"out": str(out), "after_kill": after_kill, "result": json.loads(output),
            "listing": sorted(os.listdir(model_dir))}


def test_killed_export_leaves_no_version_and_next_export_succeeds(exported):
    # The kill left only the hidden temporary folder: no version for TF Serving to pick up.
    killed = exported["after_kill"]
    assert len(killed) == 1 and next(iter(killed)).startswith(".tmp-1-"), killed
    # The next export removed it and wrote version 1, verified against Keras.
    assert exported["listing"] == ["1"]
    result = exported["result"]
    assert result["version"] == 1 and result["path"] == os.path.join(exported["out"], NAME, "1")
    assert set(result["verification"]["max_abs_diff"]) == {"serving_default", "predict_images", "predict_images_uint8"}
    assert max(result["verification"]["max_abs_diff"].values()) <= 1e-4
    files = set(os.listdir(result["path"]))
    assert {"saved_model.pb", "variables", "labels.txt", "tfl_export.json", "model_dynamic.tflite"} <= files
    with open(os.path.join(result["path"], "labels.txt")) as f:
        assert f.read().split() == ["ants", "bees"]
    with open(os.path.join(result["path"], "tfl_export.json")) as f:
        meta = json.load(f)
    assert meta["backbone"] == "mobilenet_025" and meta["image_size"] == 224
    assert meta["class_names"] == ["ants", "bees"] and meta["metrics"]["val_accuracy"] > 0.5
    assert set(meta["versions"]) == {"tfl", "tensorflow", "keras"}


def test_fresh_tensorflow_process_serves_what_tfl_predict_prints(exported, trained_run, hymenoptera, tmp_path):
    paths = val_images(hymenoptera)
    code, output = cli("predict", trained_run.run_dir, *paths, "--json")
    assert code == 0, output
    expected = {r["path"]: r for r in json.loads(output)}

    script = textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        paths = sys.argv[2:]
        model = tf.saved_model.load(sys.argv[1])
        data = [open(p, "rb").read() for p in paths]
        out = model.signatures["serving_default"](image_bytes=tf.constant(data))
        print(json.dumps({
            "labels": [s.decode() for s in out["label"].numpy()],
            "probabilities": out["probabilities"].numpy().tolist(),
            "class_names": [s.decode() for s in model.class_names[0].numpy()],
            "tfl_imported": any(m == "tfl" or m.startswith("tfl.") for m in sys.modules),
        }))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script, os.path.join(exported["out"], NAME, "1"), *paths],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["tfl_imported"] is False  # the SavedModel needs no tfl code (nor its custom layer)
    assert served["class_names"] == ["ants", "bees"]
    for path, label, probs in zip(paths, served["labels"], served["probabilities"]):
        assert label == expected[path]["label"]
        assert np.allclose(probs, [expected[path]["probabilities"][c] for c in ("ants", "bees")], atol=1e-4, rtol=0)


def test_tfl_predict_accepts_export_folders(exported, trained_run, hymenoptera):
    from tfl.serving.saved_model import find_export

    paths = val_images(hymenoptera, per_class=2)
    base, version_dir = exported["out"], os.path.join(exported["out"], NAME, "1")
    # The base folder, the model folder and the version folder all name the same SavedModel.
    assert find_export(base) == find_export(os.path.join(base, NAME)) == find_export(version_dir) == version_dir
    assert find_export(trained_run.run_dir) is None
    runs = {}
    for folder in (trained_run.run_dir, os.path.join(base, NAME)):
        code, output = cli("predict", folder, *paths, "--json")
        assert code == 0, output
        runs[folder] = json.loads(output)
    from_run, from_export = runs.values()
    assert [set(r) for r in from_export] == [set(r) for r in from_run]  # the same output format
    for a, b in zip(from_run, from_export):
        assert (a["path"], a["label"]) == (b["path"], b["label"])
        assert abs(a["probability"] - b["probability"]) <= 1e-4


def test_saved_model_cli_shows_both_signatures_and_runs_bytes(exported, hymenoptera, tmp_path):
    cli_bin = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    version_dir = os.path.join(exported["out"], NAME, "1")
    show = subprocess.run([cli_bin, "show", "--dir", version_dir, "--all"], capture_output=True, text=True,
                          timeout=300)
    assert show.returncode == 0, show.stderr
    sigs = {}
    for block in show.stdout.split("signature_def['")[1:]:
        name, _, body = block.partition("']")
        sigs[name] = " ".join(body.split())
    inputs = {"serving_default": ("image_bytes", "DT_STRING", "(-1)"),
              "predict_images": ("images", "DT_FLOAT", "(-1, -1, -1, 3)"),
              "predict_images_uint8": ("images", "DT_UINT8", "(-1, -1, -1, 3)")}
    for name, (arg, dtype, shape) in inputs.items():
        assert f"inputs['{arg}'] tensor_info: dtype: {dtype} shape: {shape}" in sigs[name], sigs.get(name)
        assert "outputs['probabilities'] tensor_info: dtype: DT_FLOAT shape: (-1, 2)" in sigs[name]
        assert "outputs['label'] tensor_info: dtype: DT_STRING shape: (-1)" in sigs[name]
        assert "outputs['label_id'] tensor_info: dtype: DT_INT32 shape: (-1)" in sigs[name]

    path = val_images(hymenoptera, per_class=1)[1]  # a bee
    with open(path, "rb") as f:
        np.save(tmp_path / "bytes.npy", np.array([f.read()], dtype=bytes))  # fixed-width bytes: no pickle
    run = subprocess.run([cli_bin, "run", "--dir", version_dir, "--tag_set", "serve", "--signature_def",
                          "serving_default", "--inputs", f"image_bytes={tmp_path / 'bytes.npy'}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    code, output = cli("predict", version_dir, path, "--json")
    label = json.loads(output)[0]["label"]
    assert f"Result for output key label:\n[b'{label}']" in run.stdout, run.stdout


def _encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_bytes_signature_takes_png_alpha_grayscale_gif_and_rejects_corrupt(exported, trained_run, hymenoptera):
    import tensorflow as tf

    from tfl.data.loading import decode_image, resize_image
    from tfl.errors import TflError
    from tfl.serving.saved_model import ServedModel

    path = val_images(hymenoptera, per_class=1)[0]
    rgb = Image.open(path).convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    files = {"png_alpha": _encode(rgba, "PNG"), "gray_jpeg": _encode(rgb.convert("L"), "JPEG"),
             "gif": _encode(rgb, "GIF"), "bmp": _encode(rgb, "BMP")}
    served = ServedModel(os.path.join(exported["out"], NAME, "1"))
    signature = served.signature
    got = signature(image_bytes=tf.constant(list(files.values())))["probabilities"].numpy()
    # The same pixels through the training pipeline and the Keras model.
    want = trained_run.model(tf.stack([resize_image(decode_image(b), 224) for b in files.values()]),
                             training=False).numpy()
    assert got.shape == (4, 2) and np.abs(got - want).max() <= 1e-4

    with open(path, "rb") as f:
        good = f.read()
    for bad, message in ((good[: len(good) // 2], "jpeg"), (b"not an image at all", "format"), (b"", "empty")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?i){message}"):
            signature(image_bytes=tf.constant([good, bad]))
    # The process that served the bad requests still serves good ones.
    assert signature(image_bytes=tf.constant([good]))["label"].numpy()[0].decode() in ("ants", "bees")
    with pytest.raises(TflError, match="(?i)jpeg"):
        served.probabilities([good[: len(good) // 2]])


def test_tflite_dynamic_range_model_scored_next_to_keras(exported, trained_run):
    import tensorflow as tf

    tflite = exported["result"]["tflite"]["dynamic"]
    assert tflite["num_images"] == 153
    # Keras accuracy recomputed on the validation split is the run's own figure.
    assert abs(tflite["keras_accuracy"] - trained_run.val_accuracy) <= 1 / 153 + 1e-6
    assert tflite["accuracy"] >= tflite["keras_accuracy"] - 0.05
    path = os.path.join(exported["result"]["path"], tflite["file"])
    assert os.path.getsize(path) == tflite["bytes"] < 1_000_000  # int8 weights: much smaller than float32
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner("predict_images")
    out = runner(images=np.full((2, 224, 224, 3), 128.0, np.float32))
    assert out["probabilities"].shape == (2, 2) and set(out) == {"probabilities", "label", "label_id"}


def test_multi_label_export_reports_labels_over_threshold(tmp_path, hymenoptera):
    import tensorflow as tf

    import tfl
    from tfl.config import TrainConfig
    from tfl.models.classifier import build_model
    from tfl.runs import RunFolder

    cfg = TrainConfig()
    cfg.data.source = f"folder:{hymenoptera}"
    cfg.model.weights, cfg.model.image_size, cfg.model.head.multi_label = None, 32, True
    run = RunFolder(str(tmp_path / "multi"))
    run.prepare(resume=False, overwrite=False)
    run.write_config(cfg)
    run.write_class_names(["ants", "bees"])
    model = build_model(cfg.model, 2)
    head = model.get_layer("head").get_layer("predictions")
    # Random backbones output ~0: the bias alone decides, one class above the threshold and one below.
    head.set_weights([head.get_weights()[0], np.array([2.0, -2.0], np.float32)])
    model.save(run.model_path)

    result = tfl.export(run.path, str(tmp_path / "exports"), threshold=0.5, verify_images=2)
    loaded = tf.saved_model.load(result.path)
    with open(val_images(hymenoptera, per_class=1)[0], "rb") as f:
        out = loaded.signatures["serving_default"](image_bytes=tf.constant([f.read()]))
    assert out["label_mask"].numpy().tolist() == [[True, False]]
    assert out["labels"].numpy().tolist() == [[b"ants", b""]]
    assert out["label"].numpy().tolist() == [b"ants"]


def test_export_usage_errors(exported, trained_run, tmp_path):
    code, output = cli("export", str(tmp_path), "--out", tmp_path / "x")
    assert code == 2 and "not a finished tfl run" in output
    code, output = cli("export", trained_run.run_dir, "--out", exported["out"], "--name", NAME, "--version", "1")
    assert code == 2 and "version 1 already exists" in output and "--version" in output
    code, output = cli("export", trained_run.run_dir, "--out", tmp_path, "--data", f"folder:{tmp_path / 'none'}")
    assert code == 2 and "verification images" in output and "--data" in output
    assert not os.path.exists(tmp_path / os.path.basename(trained_run.run_dir))  # nothing half-made


def test_full_disk_during_export_fails_in_one_line_and_keeps_earlier_versions(exported, trained_run, hymenoptera,
                                                                              tmp_path):
    """Version 1 sits on a small disk that is then filled to 256 KB: exporting version 2 must fail in one
    line, leave no trace of version 2, and leave version 1 whole and serving."""
    import shutil

    import tensorflow as tf
    from helpers import fill_disk, run_tfl, small_disk

    with small_disk(tmp_path / "disk", "32m") as disk:
        shutil.copytree(os.path.join(exported["out"], NAME, "1"), os.path.join(disk, NAME, "1"))
        before = {os.path.relpath(os.path.join(d, f), disk): os.path.getsize(os.path.join(d, f))
                  for d, _, files in os.walk(disk) for f in files}
        fill_disk(disk, leave=256 * 1024)

        proc = run_tfl("export", trained_run.run_dir, "--out", disk, "--name", NAME, check=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("tfl: error:")]
        assert len(errors) == 1, proc.stderr[-2000:]
        assert f"disk full while writing the export {os.path.join(disk, NAME, '2')}" in errors[0]
        assert "earlier versions (1) are intact" in errors[0] and "run tfl export again" in errors[0]

        assert sorted(os.listdir(os.path.join(disk, NAME))) == ["1"]  # no version 2, no temporary folder
        after = {os.path.relpath(os.path.join(d, f), disk): os.path.getsize(os.path.join(d, f))
                 for d, _, files in os.walk(disk) for f in files if f != "ballast"}
        assert after == before
        data = tf.constant([open(p, "rb").read() for p in val_images(hymenoptera, per_class=1)])
        served = [tf.saved_model.load(folder).signatures["serving_default"](image_bytes=data)["probabilities"]
                  for folder in (os.path.join(disk, NAME, "1"), os.path.join(exported["out"], NAME, "1"))]
        assert served[0].shape == (2, 2) and np.array_equal(served[0].numpy(), served[1].numpy())
