"""What runs a model on decoded images for `Predictor`: TensorFlow (Keras), or LiteRT with XNNPACK.

`keras` calls the model (a run's `model.keras`, or an export's
`predict_images` signature) as one compiled TensorFlow function per batch.
`litert` runs the same network as a float32 TFLite model in LiteRT's
interpreter (the `ai-edge-litert` package, `pip install 'tfl[litert]'`),
whose XNNPACK kernels measured 3-4 times TensorFlow's images/s on a 2-core
CPU for MobileNet (README, Speed). `auto` takes `litert` when the package is
installed, `keras` otherwise.

Both engines get the same pixels: files are decoded and resized by the
training pipeline's own `decode_image` and `resize_image`, and the model
holds its preprocessing. A TFLite model is checked against the Keras model
(or the export's SavedModel) on real images when it is made: the first batch
of the first request runs through both, and the largest probability
difference must stay within `TOLERANCE` with every label the same, as
`tfl export` checks the SavedModel. A run folder keeps the checked model
(`model_float32.tflite`, with what the check found in
`model_float32.tflite.json`) until `model.keras` changes; an export uses the
`model_float32.tflite` that `tfl export --tflite float32` wrote and checked
on the whole validation split, or converts its SavedModel in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import typing

import numpy as np

from tfl._logging import log
from tfl.errors import TflError, UsageError, flag

ENGINES = ("auto", "keras", "litert")
# Largest |TFLite - Keras| probability difference accepted, as for the exported SavedModel.
TOLERANCE = 1e-4
RUN_TFLITE = "model_float32.tflite"
# Images per interpreter call: XNNPACK ran MobileNet 0.25 at 224 px fastest per image at batches of 4-16
# (32 ran at 0.6-0.7x their images/s on the 2-core test machine), so larger batches run in slices.
LITE_BATCH = 8
INSTALL = "pip install 'tfl[litert]' (or pip install ai-edge-litert)"


def check_engine(engine: str) -> str:
    """`engine` when it is one of `ENGINES`, else a one-line UsageError."""
    if engine not in ENGINES:
        raise UsageError(f"{flag('--engine', 'engine=')} {engine!r}: choose from {', '.join(ENGINES)}")
    return engine


def litert_installed() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def resolve(engine: str) -> str:
    """The engine `auto` stands for here: LiteRT when it is installed (it measured faster on CPU)."""
    engine = check_engine(engine)
    if engine == "auto":
        return "litert" if litert_installed() else "keras"
    if engine == "litert" and not litert_installed():
        option = flag("--engine litert", "engine='litert'")
        raise UsageError(f"{option} needs the LiteRT package: {INSTALL}")
    return engine


class LiteModel:
    """A TFLite flatbuffer in LiteRT's interpreter (XNNPACK), called like a Keras model on a batch.

    Args:
        content: the flatbuffer.
        threads: interpreter threads (default: one per core).

    Examples:
        >>> LiteModel(open("model_float32.tflite", "rb").read())(images).shape
        (8, 2)
    """

    def __init__(self, content: bytes, threads: typing.Optional[int] = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UsageError(f"the LiteRT engine needs the LiteRT package: {INSTALL}") from None
        with _quiet_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++
            self.interpreter = Interpreter(model_content=content, num_threads=threads or os.cpu_count() or 1)
            self.interpreter.allocate_tensors()
        signatures = self.interpreter.get_signature_list()
        if signatures:  # an export's flatbuffer: its predict_images signature
            key = next(iter(signatures))
            self.runner = self.interpreter.get_signature_runner(key)
            self.input = "images" if "images" in signatures[key]["inputs"] else signatures[key]["inputs"][0]
            self.output = ("probabilities" if "probabilities" in signatures[key]["outputs"]
                           else signatures[key]["outputs"][0])
        else:  # a run's flatbuffer: one input, one output
            self.runner = None
            self._input = self.interpreter.get_input_details()[0]["index"]
            self._output = self.interpreter.get_output_details()[0]["index"]
            self._shape = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        if len(images) > LITE_BATCH:
            return np.concatenate([self(images[i:i + LITE_BATCH]) for i in range(0, len(images), LITE_BATCH)])
        if self.runner is not None:
            return self.runner(**{self.input: images})[self.output]
        if self._shape != images.shape:  # the last batch of a request is smaller: re-plan once
            self.interpreter.resize_tensor_input(self._input, images.shape, strict=True)
            self.interpreter.allocate_tensors()
            self._shape = images.shape
        self.interpreter.set_tensor(self._input, images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 sent to /dev/null for the block when TF_CPP_MIN_LOG_LEVEL hides INFO lines.

    LiteRT's C++ INFO lines then go where TensorFlow's go (the command line
    sets the level to 2, `tfl --debug` leaves it unset).
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def compare(reference: np.ndarray, lite: np.ndarray, what: str) -> dict:
    """How a TFLite model's probabilities compare with the reference's; TflError beyond `TOLERANCE`."""
    diff = float(np.abs(np.asarray(lite) - np.asarray(reference)).max()) if len(reference) else 0.0
    agree = bool((np.argmax(lite, 1) == np.argmax(reference, 1)).all())
    if not (diff <= TOLERANCE and agree):
        raise TflError(f"the LiteRT model of {what} differs from it by {diff:.2e} (> {TOLERANCE:g}) on "
                       f"{len(reference)} images{'' if agree else ', labels disagree'}: use --engine keras")
    return {"num_images": int(len(reference)), "max_abs_diff": diff, "labels_agree": agree, "tolerance": TOLERANCE}


# -- a run folder's TFLite model, kept beside model.keras -------------------------------------------
def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_run_model(run) -> typing.Tuple[typing.Optional[bytes], dict]:
    """(flatbuffer, its record) of a run's checked TFLite model; (None, {}) when absent or stale.

    Args:
        run: a `tfl.runs.RunFolder`.
    """
    from tfl.runs import read_json

    path = os.path.join(run.path, RUN_TFLITE)
    try:
        record = read_json(path + ".json", default={})
    except TflError:  # damaged: made again
        return None, {}
    if (not isinstance(record, dict) or not isinstance(record.get("image_size"), int) or not os.path.exists(path)
            or not os.path.exists(run.model_path)):
        return None, {}
    if record.get("model_keras_sha256") != _digest(run.model_path):
        return None, {}  # trained again since: made again from the new model.keras
    with open(path, "rb") as f:
        content = f.read()
    if hashlib.sha256(content).hexdigest() != record.get("sha256"):
        return None, {}
    return content, record


def store_run_model(run, content: bytes, record: dict) -> None:
    """Keeps a checked TFLite model in the run folder; a folder that cannot be written keeps none."""
    from tfl.runs import atomic_path, atomic_write_json

    path = os.path.join(run.path, RUN_TFLITE)
    record = {**record, "sha256": hashlib.sha256(content).hexdigest(),
              "model_keras_sha256": _digest(run.model_path)}
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(content)
        atomic_write_json(path + ".json", record)
    except OSError as e:
        log.info(f"warning: cannot keep {path} ({e.strerror or e}): the LiteRT model is made again next time")
