"""Predicting labels of image files with a trained run."""

from __future__ import annotations

import os
import typing
import weakref

import numpy as np

from tfl._logging import log
from tfl.errors import TflError, UsageError

# model -> its traced inference function; weak, so a model that is dropped frees both.
_CALLS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_call(model):
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
    call = compiled_call(model)
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

    Files are decoded and resized in a parallel tf.data pipeline (the
    training pipeline's `decode_image` and `resize_image`, EXIF orientation
    included) while the engine runs the previous batch. The engine
    (`tfl.serving.engines`) is TensorFlow (`keras`: the run's Keras model, or
    the export's `predict_images` signature) or LiteRT with XNNPACK
    (`litert`: a float32 TFLite model, checked against the Keras model when
    it is made); `auto` takes LiteRT when `ai-edge-litert` is installed. A
    multi-label model also returns the labels whose probability reaches their
    threshold (the run's `thresholds.json`, or the thresholds stored in the
    export).

    Args:
        run_dir: a tfl run folder, or an export folder (`EXPORT_DIR`,
            `EXPORT_DIR/<name>` for its latest version, or a version folder).
        batch_size: images per forward pass.
        engine: `auto`, `keras` or `litert`.

    Examples:
        >>> Predictor("runs/ants").predict(["bee.jpg"])[0]["label"]
        'bees'
        >>> Predictor("exports/ants", engine="litert").predict(["bee.jpg"])[0]["label"]
        'bees'
    """

    def __init__(self, run_dir: str, batch_size: int = 32, engine: str = "auto"):
        from tfl.runs import RunFolder
        from tfl.serving import engines
        from tfl.serving import saved_model as _serving

        self.batch_size = batch_size
        self.engine = engines.resolve(engine)
        self._auto = engine == "auto"
        self._lite = None
        # What the TFLite model was checked against when it was made (num_images, max_abs_diff, ...).
        self.lite_check: dict = {}
        self._model = None
        self._bytes_only = False
        export_dir = None if RunFolder(run_dir).exists() else _serving.find_export(run_dir)
        self.served = _serving.ServedModel(export_dir) if export_dir else None
        if self.served is not None:
            self.run = None
            self.class_names = self.served.class_names
            self.image_size = self.served.metadata.get("image_size")
            self.multi_label = self.served.multi_label
            self.thresholds = self.served.thresholds
            # An export without them (made before its predict_images signature) is served through its bytes.
            self._bytes_only = not self.image_size or "predict_images" not in self.served.loaded.signatures
            if self._bytes_only:
                self.engine = "keras"
            return
        self.run = RunFolder(run_dir)
        self.class_names = self.run.read_class_names()
        self.multi_label = self.run.read_config().model.head.multi_label
        self.thresholds = run_thresholds(self.run) if self.multi_label else None
        if self.engine == "litert":
            content, record = engines.cached_run_model(self.run)
            if content is not None:
                self._lite, self.lite_check = engines.LiteModel(content), record.get("check", {})
                self.image_size = int(record["image_size"])
                return
        self.image_size = int(self.model.input_shape[1])

    @property
    def model(self):
        """The run's Keras model (loaded when first needed; None for an export)."""
        if self._model is None and self.run is not None:
            self._model = load_model(self.run.path)
        return self._model

    def _reference(self, images: np.ndarray) -> np.ndarray:
        if self.served is not None:
            return self.served.predict_images(images)
        return compiled_call(self.model)(images).numpy()

    def _make_lite(self, images: np.ndarray) -> None:
        """Converts the model to TFLite and checks it on `images` (the first batch); a run keeps it."""
        import os

        from tfl.serving import engines
        from tfl.serving import tflite as _tflite

        if self.served is not None:
            path = os.path.join(self.served.path, _tflite.file_name("float32"))
            if os.path.exists(path):  # written and checked on the validation split by tfl export
                with open(path, "rb") as f:
                    self._lite = engines.LiteModel(f.read())
                self.lite_check = (self.served.metadata.get("tflite") or {}).get("float32", {})
                return
            content, what = _tflite.convert(self.served.path, "float32"), f"the export {self.served.path}"
        else:
            content, what = _tflite.convert_model(compiled_call(self.model)), self.run.model_path
        lite = engines.LiteModel(content)
        self.lite_check = engines.compare(self._reference(images), lite(images), what)
        # Debug level: prediction prints its answers and nothing else (the check is kept in lite_check and,
        # for a run, in model_float32.tflite.json).
        log.debug(f"LiteRT model of {what} made and checked on {len(images)} of these images: largest "
                  f"probability difference {self.lite_check['max_abs_diff']:.1e}, labels agree")
        if self.run is not None:
            engines.store_run_model(self.run, content, {"image_size": self.image_size, "check": self.lite_check})
        self._lite = lite

    def _probabilities(self, images: np.ndarray) -> np.ndarray:
        if self.engine == "litert" and self._lite is None:
            try:
                self._make_lite(images)
            except TflError as e:
                if not self._auto:
                    raise
                log.info(f"warning: {e}; predicting with TensorFlow instead")
                self.engine = "keras"
        return self._lite(images) if self.engine == "litert" else self._reference(images)

    def predict(self, inputs: typing.Sequence[str]) -> typing.List[dict]:
        """One dict per image file: `path`, `label`, `probability`, `probabilities`.

        Multi-label models add `labels`: `{label: probability}` of the labels
        at or over their thresholds, most probable first (empty when none is).
        Files that cannot be decoded get an `error` entry instead of a label:
        those whose header or structure is wrong are found before decoding,
        and the pipeline leaves out the few that fail to decode, which are
        then decoded alone to say why.
        """
        from tfl.data import images as _images

        notes: list = []
        paths = _images.list_images(inputs, notes)
        for note in notes:  # a link loop, a folder linked twice, an unreadable folder
            log.info(f"warning: {note}")
        problems = _images.header_problems(paths)
        good = [p for p in paths if p not in problems]
        results = {p: {"path": p, "error": problems[p]} for p in problems}
        if good and not self._bytes_only:
            probs: typing.List[typing.Any] = [None] * len(good)
            for index, images in image_batches(good, self.image_size, self.batch_size):
                for i, p in zip(index, self._probabilities(images)):
                    probs[i] = p
            probs = [p if p is not None else f"cannot decode ({decode_error(path)})" for p, path in zip(probs, good)]
        elif good:
            probs = self.served.predict_files(good, self.batch_size)
        else:
            probs = []
        for path, p in zip(good, probs):
            if isinstance(p, str):
                results[path] = {"path": path, "error": p}
                continue
            i = int(np.argmax(p))
            results[path] = {"path": path, "label": self.class_names[i], "probability": float(p[i]),
                             "probabilities": {c: float(v) for c, v in zip(self.class_names, p)}}
            if self.multi_label:
                over = [j for j in np.argsort(-p, kind="stable") if p[j] >= self.thresholds[j]]
                results[path]["labels"] = {self.class_names[j]: float(p[j]) for j in over}
        return [results[p] for p in paths]


def image_batches(paths: typing.Sequence[str], image_size: int, batch_size: int):
    """(positions in `paths`, float32 images [B, S, S, 3]) batches, decoded in parallel, in order.

    A file that fails to decode is left out (its position is missing), so one
    bad file costs no batch. Decoding runs ahead of the caller (prefetch),
    on as many threads as cores.
    """
    import os

    import tensorflow as tf

    from tfl.data.loading import decode_image, resize_image, with_options

    threads = max(2, os.cpu_count() or 2)
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), [os.fsencode(p) for p in paths]))
    ds = ds.map(lambda i, p: (i, resize_image(decode_image(tf.io.read_file(p)), image_size)),
                num_parallel_calls=threads, deterministic=True)
    ds = with_options(ds.ignore_errors().batch(batch_size).prefetch(2))
    for index, images in ds:
        yield index.numpy(), images.numpy()


def decode_error(path: str) -> str:
    """Why TensorFlow cannot decode `path` (its op's own words)."""
    import re

    import tensorflow as tf

    from tfl.data.loading import decode_image
    from tfl.serving.saved_model import error_line

    try:
        decode_image(tf.io.read_file(path))
    except tf.errors.OpError as e:  # eager errors start with the op's function name and end with its type
        return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", error_line(e.message)).split(" [Op:")[0]
    return "it decoded when tried alone"


def predict(run_dir: str, inputs: typing.Sequence[str], batch_size: int = 32,
            engine: str = "auto") -> typing.List[dict]:
    """Predicts labels for image files and folders (walked recursively) with a run's or an export's model."""
    return Predictor(run_dir, batch_size, engine).predict(inputs)
