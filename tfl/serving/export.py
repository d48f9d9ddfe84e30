"""Exporting a run for serving: SavedModels that take image files, verified.

`export(run, out)` writes `out/<name>/<version>/`, TensorFlow Serving's
layout, through Keras' `ExportArchive`. The SavedModel has three
signatures, all returning `probabilities`, `label` and `label_id` (plus
`label_mask` and `labels` for multi-label models):

- `serving_default`: `image_bytes`, a tf.string batch of JPEG/PNG/GIF/BMP
  files, decoded and resized exactly as in training;
- `predict_images`: `images`, float32 RGB 0..255 [batch, H, W, 3];
- `predict_images_uint8`: the same as uint8.

The version is written to a hidden temporary folder, reloaded with
`tf.saved_model.load` and compared with the Keras model on real validation
images, and only then renamed into place: a killed or failed export leaves
no version behind.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import typing

import numpy as np

from tfl.errors import TflError, UsageError
from tfl.runs import disk_full_is_one_line, is_disk_full
from tfl.serving import saved_model as _serving
from tfl.serving import tflite as _tflite

# Largest |SavedModel - Keras| probability difference accepted.
TOLERANCE = 1e-4
_TMP_PREFIX = ".tmp-"


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote.

    Args:
        path: the version folder (a SavedModel).
        name: the model name (folder under the export base).
        version: the integer version.
        class_names: labels in output order.
        verification: how the reloaded SavedModel compared with Keras.
        tflite: per TFLite mode: its file, size and validation scores.
    """

    path: str
    name: str
    version: int
    class_names: typing.List[str]
    verification: dict
    tflite: typing.Dict[str, dict] = dataclasses.field(default_factory=dict)


def export(run_dir: str, out: str = "exports", *, name: typing.Optional[str] = None,
           version: typing.Optional[int] = None, tflite: typing.Sequence[str] = (),
           threshold: typing.Optional[float] = None, data: typing.Optional[str] = None,
           verify_images: int = 8) -> ExportResult:
    """Exports a run's model as a verified SavedModel (and optionally TFLite).

    Args:
        run_dir: a finished tfl run folder.
        out: export base folder; the model goes to `out/<name>/<version>/`.
        name: model name (default: the run folder's name).
        version: integer version (default: one more than the latest).
        tflite: TFLite modes to add: `float32`, `float16`, `dynamic`.
        threshold: multi-label models: the probability from which every
            label is reported; default: each label's own threshold, chosen
            on validation when the run ended (`RUN/thresholds.json`; 0.5
            for a run without one). Stored in the SavedModel (`thresholds`)
            and in `tfl_export.json`.
        data: data source for the verification images (default: the run's).
        verify_images: validation images the three signatures are checked on.

    Returns:
        An `ExportResult`.

    Examples:
        >>> result = tfl.export("runs/ants", "exports")
        >>> result.path
        'exports/ants/1'
    """
    from tfl.runs import RunFolder
    from tfl.serving.prediction import load_model, run_thresholds

    run = RunFolder(run_dir)
    if not run.is_trained():
        raise UsageError(f"{run_dir} is not a finished tfl run (no model.keras or class_names.json)")
    name = _check_name(name or os.path.basename(os.path.abspath(run_dir)))
    bad = [m for m in tflite if m not in _tflite.MODES]
    if bad:
        raise UsageError(f"--tflite {bad[0]}: choose from {', '.join(_tflite.MODES)}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise UsageError(f"--threshold {threshold}: must be between 0 and 1")
    model_dir = os.path.join(out, name)
    version = _choose_version(model_dir, version)  # before the slow part: a taken --version fails at once

    cfg = run.read_config()
    class_names = run.read_class_names()
    multi_label = bool(cfg.model.head.multi_label)
    split = _validation_split(cfg, data, class_names, multi_label)
    model = load_model(run_dir)
    image_size = int(model.input_shape[1])
    thresholds = (np.full(len(class_names), threshold) if threshold is not None
                  else run_thresholds(run)).astype(np.float32)
    metadata = _metadata(run, cfg, name, version, class_names, image_size, multi_label, thresholds,
                         "--threshold" if threshold is not None else "validation")
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create export folder {model_dir}: {e.strerror}; choose another --out") from None
    _remove_stale(model_dir)

    tmp = os.path.join(model_dir, f"{_TMP_PREFIX}{version}-{os.getpid()}")
    final = os.path.join(model_dir, str(version))
    try:
        with disk_full_is_one_line(f"the export {final}", _disk_full_hint(model_dir, version)):
            _write_saved_model(model, tmp, class_names, image_size, multi_label, thresholds, metadata)
            metadata["verification"] = verify(tmp, model, _samples(split, verify_images), image_size,
                                              multi_label, thresholds)
            metadata["tflite"] = _add_tflite(tmp, tflite, model, split, image_size, cfg.data.batch_size,
                                             thresholds if multi_label else None)
            _write_sidecars(tmp, class_names, metadata)
        if os.path.exists(final):
            raise TflError(f"{final} appeared while exporting (another export?): nothing was replaced")
        os.rename(tmp, final)
    finally:
        # Also gives back the space that a write cut short by a full disk took.
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(final, name, version, list(class_names), metadata["verification"], metadata["tflite"])


def _disk_full_hint(model_dir: str, version: int) -> str:
    earlier = sorted((int(v) for v in os.listdir(model_dir) if v.isdigit()), reverse=True)
    kept = ""
    if earlier:
        shown = ", ".join(map(str, earlier[:5])) + (", ..." if len(earlier) > 5 else "")
        kept = f"; earlier versions ({shown}) are intact"
    return f"nothing of version {version} was left behind{kept}; free some space and run tfl export again"


def _add_tflite(folder, modes, model, split, image_size, batch_size, thresholds=None) -> dict:
    """Converts and scores each TFLite mode on the whole validation split (multi-label: at `thresholds`)."""
    from tfl.serving.evaluation import predict_probabilities

    if not modes:
        return {}
    dataset = split.dataset(image_size, batch_size)
    keras_probs, labels = predict_probabilities(model, dataset)
    out = {}
    for mode in dict.fromkeys(modes):
        content = _tflite.convert(folder, mode)
        with open(os.path.join(folder, _tflite.file_name(mode)), "wb") as f:
            f.write(content)
        scores = _tflite.verify(content, dataset, keras_probs, labels, mode, thresholds=thresholds)
        out[mode] = {"file": _tflite.file_name(mode), "bytes": len(content), **scores}
    return out


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name.isdigit():
        raise UsageError(f"--name '{name}': use letters, digits, '.', '_' or '-' (not only digits)")
    return name


def _remove_stale(model_dir: str) -> None:
    """Deletes temporary folders left by exports that were killed."""
    for entry in os.scandir(model_dir):
        m = re.fullmatch(re.escape(_TMP_PREFIX) + r"\d+-(\d+)", entry.name)
        if m and entry.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _choose_version(model_dir: str, version: typing.Optional[int]) -> int:
    existing = ([int(e.name) for e in os.scandir(model_dir) if e.is_dir() and e.name.isdigit()]
                if os.path.isdir(model_dir) else [])
    if version is None:
        return max(existing, default=0) + 1
    if version < 1:
        raise UsageError(f"--version {version}: versions are positive integers")
    if version in existing:
        raise UsageError(f"version {version} already exists in {model_dir}: choose another --version "
                         f"or leave it out to get {max(existing) + 1}")
    return version


def _validation_split(cfg, data: typing.Optional[str], class_names, multi_label: bool = False):
    from tfl.data.loading import load_data

    dcfg = dataclasses.replace(cfg.data, source=data or cfg.data.source, download=False)
    try:
        loaded = load_data(dcfg, seed=cfg.seed, multi_label=multi_label)
    except UsageError as e:
        raise UsageError(f"cannot load the verification images ({e}); pass --data SOURCE with images "
                         "of the run's classes") from None
    if list(loaded.class_names) != list(class_names):
        raise UsageError(f"{dcfg.source} has classes {loaded.class_names}, the model {list(class_names)}: "
                         "pass --data with the run's classes")
    return loaded.val


def _samples(split, n: int) -> typing.List[bytes]:
    """Encoded bytes of up to `n` validation images spread over the split."""
    import tensorflow as tf

    n = max(1, min(n, len(split)))
    if split.paths is not None:
        picks = np.unique(np.linspace(0, len(split) - 1, n).astype(int))
        out = []
        for i in picks:
            with open(split.paths[i], "rb") as f:
                out.append(f.read())
        return out
    # tfds splits hold decoded pixels: PNG is lossless, so they decode back to the same ones.
    return [tf.io.encode_png(x).numpy() for x, _ in split.raw().take(n)]


def _write_saved_model(model, path, class_names, image_size, multi_label, thresholds, metadata) -> None:
    import json

    import keras
    import tensorflow as tf

    # Traced once and called by every signature: one copy of the network in the SavedModel.
    classify = tf.function(lambda images: model(images, training=False), autograph=False,
                           input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32)])

    def serve_bytes(image_bytes):
        probs = classify(_serving.decode_batch(image_bytes, image_size))
        return _serving.outputs(probs, class_names, multi_label, thresholds)

    def serve_images(images):
        probs = classify(_serving.resize_batch(images, image_size))
        return _serving.outputs(probs, class_names, multi_label, thresholds)

    # No archive.track(model): the endpoints capture the variables they use, and
    # tracking the model makes the save walk (and trace) every Keras layer.
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve_bytes,
                         [tf.TensorSpec([None], tf.string, name=_serving.BYTES_INPUT)])
    for endpoint, dtype in (("predict_images", tf.float32), ("predict_images_uint8", tf.uint8)):
        archive.add_endpoint(endpoint, serve_images,
                             [tf.TensorSpec([None, None, None, 3], dtype, name=_serving.TENSOR_INPUT)])
    # Reachable after tf.saved_model.load as `.class_names[0]` and `.tfl_metadata[0]`.
    archive.add_variable_collection("class_names", [tf.Variable(list(class_names), trainable=False)])
    archive.add_variable_collection("tfl_metadata", [tf.Variable(json.dumps(metadata), trainable=False)])
    if multi_label:  # `.thresholds[0]`: the per-label thresholds the outputs apply, in class order
        archive.add_variable_collection("thresholds", [tf.Variable(np.asarray(thresholds, np.float32),
                                                                   trainable=False)])
    try:
        archive.write_out(path, verbose=False)
    except Exception as e:  # noqa: BLE001 - TF raises many types; keep the first line
        if is_disk_full(e):
            raise  # export() turns it into its one line, with what is left intact
        raise TflError(f"writing the SavedModel failed: {str(e).strip().splitlines()[0]}") from None


def verify(path: str, model, samples: typing.Sequence[bytes], image_size: int, multi_label: bool = False,
           threshold: typing.Union[float, typing.Sequence[float]] = 0.5) -> dict:
    """Reloads the SavedModel at `path` and compares every signature with `model`.

    Returns the largest absolute difference per signature; raises TflError
    when any exceeds `TOLERANCE` or a label disagrees with the probabilities.
    """
    import tensorflow as tf

    from tfl.data.loading import decode_image, resize_image

    loaded = tf.saved_model.load(path)
    sig = loaded.signatures
    decoded = [decode_image(b) for b in samples]
    resized = tf.stack([resize_image(x, image_size) for x in decoded])
    ref = model(resized, training=False).numpy()
    got = {
        "serving_default": sig["serving_default"](
            **{_serving.BYTES_INPUT: tf.constant(list(samples), dtype=tf.string)}),
        "predict_images": sig["predict_images"](**{_serving.TENSOR_INPUT: resized}),
    }
    # Decoded images differ in size, so the uint8 signature gets them one at a time, unresized.
    per_image = [sig["predict_images_uint8"](**{_serving.TENSOR_INPUT: x[None]}) for x in decoded]
    got["predict_images_uint8"] = {k: tf.concat([o[k] for o in per_image], 0) for k in per_image[0]}
    names = np.array([n.decode() for n in loaded.class_names[0].numpy()])
    report = {"num_images": len(samples), "tolerance": TOLERANCE, "max_abs_diff": {}}
    for key, outs in got.items():
        probs = outs["probabilities"].numpy()
        diff = float(np.abs(probs - ref).max())
        report["max_abs_diff"][key] = diff
        if not diff <= TOLERANCE:
            raise TflError(f"the exported {key} signature differs from the Keras model by {diff:.2e} "
                           f"(> {TOLERANCE:g}) on validation images: the export was not kept")
        labels = [s.decode() for s in outs["label"].numpy()]
        if labels != list(names[probs.argmax(1)]) or list(outs["label_id"].numpy()) != list(probs.argmax(1)):
            raise TflError(f"the exported {key} signature returns labels that disagree with its probabilities")
        if multi_label:
            limits = np.broadcast_to(np.asarray(threshold, np.float32), (len(names),))
            want = np.where(probs >= limits[None, :], names[None, :], "").tolist()
            if [[s.decode() for s in row] for row in outs["labels"].numpy()] != want:
                raise TflError(f"the exported {key} signature's labels disagree with its probabilities")
    return report


def _metadata(run, cfg, name, version, class_names, image_size, multi_label, thresholds, chosen_by) -> dict:
    import keras
    import tensorflow as tf

    from tfl import __version__

    return {
        "format": "tfl-export/1",
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run": os.path.abspath(run.path),
        "data": cfg.data.source,
        "backbone": cfg.model.backbone,
        "image_size": image_size,
        "multi_label": multi_label,
        **({"thresholds": {c: float(t) for c, t in zip(class_names, thresholds)}, "thresholds_from": chosen_by}
           if multi_label else {}),
        "class_names": list(class_names),
        "metrics": run.read_metrics(),
        "versions": {"tfl": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "signatures": {
            "serving_default": {"inputs": {_serving.BYTES_INPUT: "string [batch] (JPEG/PNG/GIF/BMP file bytes)"}},
            "predict_images": {"inputs": {_serving.TENSOR_INPUT: "float32 [batch, H, W, 3] RGB 0..255"}},
            "predict_images_uint8": {"inputs": {_serving.TENSOR_INPUT: "uint8 [batch, H, W, 3] RGB"}},
            "outputs": {"probabilities": f"float32 [batch, {len(class_names)}]", "label": "string [batch]",
                        "label_id": "int32 [batch]",
                        **({"label_mask": f"bool [batch, {len(class_names)}] (probability >= the label's threshold)",
                            "labels": f"string [batch, {len(class_names)}] (class name where label_mask, else '')"}
                           if multi_label else {})},
        },
    }


def _write_sidecars(folder: str, class_names, metadata: dict) -> None:
    from tfl.runs import atomic_write_json, atomic_write_text

    atomic_write_text(os.path.join(folder, _serving.LABELS_FILE), "".join(f"{c}\n" for c in class_names))
    atomic_write_json(os.path.join(folder, _serving.METADATA_FILE), metadata)
