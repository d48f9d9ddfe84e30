"""Predicting labels of image files with a trained run."""

from __future__ import annotations

import os
import typing
import weakref

import numpy as np

from tfl._logging import log
from tfl.errors import UsageError

# model -> its traced inference function; weak, so a model that is dropped frees both.
_CALLS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled(model):
    """`model(x, training=False)` traced once per model for any batch size (the last, smaller batch too)."""
    import tensorflow as tf

    call = _CALLS.get(model)
    if call is None:
        ref = weakref.ref(model)  # the function must not keep the model (its dictionary key) alive
        spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        call = tf.function(lambda x: ref()(x, training=False), input_signature=spec, autograph=False)
        _CALLS[model] = call
    return call


def predict_probabilities(model, dataset) -> typing.Tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, C], labels [N]) for a dataset of (images, labels).

    A compiled call per batch instead of `model.predict`, which here spends
    seconds of overhead around the compute (tf.data autotuning and its
    shutdown); the call is traced once per model, so later calls (a
    `Predictor` answering requests, evaluation after training) skip tracing.
    """
    call = _compiled(model)
    probs, labels = [], []
    for x, y in dataset:
        probs.append(call(x).numpy())
        labels.append(np.asarray(y))
    return np.concatenate(probs), np.concatenate(labels)


def run_thresholds(run) -> np.ndarray:
    """A multi-label run's per-label decision thresholds (`RunFolder`), in class order; 0.5 each without any."""
    names = run.read_class_names()
    stored = run.read_thresholds().get("thresholds") or {}
    return np.asarray([stored.get(name, 0.5) for name in names], np.float64)


def load_model(run_dir: str):
    """Loads `model.keras` of a run folder (or a `.keras` file), never running code from it.

    The file's config is checked first (`tfl.models.trust`: no Lambda layer, no
    object from outside Keras and tfl), then Keras loads it in safe mode.
    """
    from tfl.errors import TflError
    from tfl.models import trust
    from tfl.runs import RunFolder

    path = run_dir if run_dir.endswith(".keras") and os.path.isfile(run_dir) else RunFolder(run_dir).model_path
    if not os.path.exists(path):
        raise UsageError(f"{run_dir} has no model.keras: is it a finished tfl run? (tfl train --resume {run_dir})")
    trust.check_model_file(path)  # before Keras (or TensorFlow) is even imported
    import keras

    from tfl.models import classifier as model_lib

    model_lib.register_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a file it cannot build
        raise TflError(f"{path}: Keras cannot load it ({(str(e).strip().splitlines() or [type(e).__name__])[0]})") \
            from None


class Predictor:
    """Labels image files with the model of a run folder or of a `tfl export`.

    An export is called through its `serving_default` signature with the
    files' bytes, exactly as a server would run it. A multi-label model also
    returns the labels whose probability reaches their threshold (the run's
    `thresholds.json`, or the thresholds stored in the export).

    Args:
        run_dir: a tfl run folder, or an export folder (`EXPORT_DIR`,
            `EXPORT_DIR/<name>` for its latest version, or a version folder).
        batch_size: images per forward pass.

    Examples:
        >>> Predictor("runs/ants").predict(["bee.jpg"])[0]["label"]
        'bees'
        >>> Predictor("exports/ants").predict(["bee.jpg"])[0]["label"]
        'bees'
    """

    def __init__(self, run_dir: str, batch_size: int = 32):
        from tfl.runs import RunFolder
        from tfl.serving import saved_model as _serving

        self.batch_size = batch_size
        export_dir = None if RunFolder(run_dir).exists() else _serving.find_export(run_dir)
        self.served = _serving.ServedModel(export_dir) if export_dir else None
        if self.served is not None:
            self.model = None
            self.class_names = self.served.class_names
            self.image_size = self.served.metadata.get("image_size")
            self.multi_label = self.served.multi_label
            self.thresholds = self.served.thresholds
            return
        run = RunFolder(run_dir)
        self.model = load_model(run_dir)
        self.class_names = run.read_class_names()
        self.image_size = self.model.input_shape[1]
        self.multi_label = run.read_config().model.head.multi_label
        self.thresholds = run_thresholds(run) if self.multi_label else None

    def predict(self, inputs: typing.Sequence[str]) -> typing.List[dict]:
        """One dict per image file: `path`, `label`, `probability`, `probabilities`.

        Multi-label models add `labels`: `{label: probability}` of the labels
        at or over their thresholds, most probable first (empty when none is).
        Files that cannot be decoded get an `error` entry instead of a label.
        """
        from tfl.data import images as _images
        from tfl.data.loading import Split

        notes: list = []
        paths = _images.list_images(inputs, notes)
        for note in notes:  # a link loop, a folder linked twice, an unreadable folder
            log.info(f"warning: {note}")
        problems = dict(_images.check_files(paths))
        good = [p for p in paths if p not in problems]
        results = {p: {"path": p, "error": problems[p]} for p in problems}
        if good:
            if self.served is not None:
                probs = self.served.predict_files(good, self.batch_size)
            else:
                split = Split("predict", [0] * len(good), good)
                probs, _ = predict_probabilities(self.model,
                                                 split.dataset(self.image_size, self.batch_size, cache=False))
            for path, p in zip(good, probs):
                if isinstance(p, str):  # an export could not decode it
                    results[path] = {"path": path, "error": p}
                    continue
                i = int(np.argmax(p))
                results[path] = {"path": path, "label": self.class_names[i], "probability": float(p[i]),
                                 "probabilities": {c: float(v) for c, v in zip(self.class_names, p)}}
                if self.multi_label:
                    over = [j for j in np.argsort(-p, kind="stable") if p[j] >= self.thresholds[j]]
                    results[path]["labels"] = {self.class_names[j]: float(p[j]) for j in over}
        return [results[p] for p in paths]


def predict(run_dir: str, inputs: typing.Sequence[str], batch_size: int = 32) -> typing.List[dict]:
    """Predicts labels for image files and folders (walked recursively) with a run's or an export's model."""
    return Predictor(run_dir, batch_size).predict(inputs)
