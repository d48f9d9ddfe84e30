"""The graph a served model runs, and reading exported models back.

An export folder follows TensorFlow Serving's layout::

    EXPORT_DIR/
      <name>/
        1/                  a SavedModel (saved_model.pb, variables/)
          labels.txt        class names, one a line, in output order
          tfl_export.json   metadata: backbone, size, versions, metrics, per-label thresholds
          model_<mode>.tflite   optional TFLite models
        2/ ...

The signatures decode and resize with `tfl.data.loading.decode_image` and
`tfl.data.loading.resize_image`, the functions the training pipeline uses, so the
server sees exactly the pixels the trained model saw.
"""

from __future__ import annotations

import json
import os
import typing

import numpy as np

from tfl.errors import TflError, UsageError

LABELS_FILE = "labels.txt"
METADATA_FILE = "tfl_export.json"
SAVED_MODEL_FILE = "saved_model.pb"
BYTES_INPUT = "image_bytes"
TENSOR_INPUT = "images"


def decode_batch(image_bytes, image_size: int):
    """tf.string [B] of encoded images -> float32 [B, S, S, 3] RGB 0..255."""
    import tensorflow as tf

    from tfl.data.loading import decode_image, resize_image

    return tf.map_fn(lambda b: resize_image(decode_image(b), image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def resize_batch(images, image_size: int):
    """A float32 or uint8 batch [B, H, W, 3] -> float32 [B, S, S, 3] (identity at S x S)."""
    from tfl.data.loading import resize_image

    return resize_image(images, image_size)


def outputs(probabilities, class_names: typing.Sequence[str], multi_label: bool = False,
            threshold: typing.Union[float, typing.Sequence[float]] = 0.5) -> dict:
    """The served outputs from the model's probabilities [B, C].

    Multi-label models add `label_mask` (bool [B, C], probability >= the
    label's threshold; `threshold` is one for all labels or one per label)
    and `labels` (string [B, C]: the class name where the mask is set, ""
    elsewhere). Only ops that TFLite has are used, so the TFLite model
    returns the same outputs.
    """
    import tensorflow as tf

    probs = tf.cast(probabilities, tf.float32)
    names = tf.constant(list(class_names), dtype=tf.string)
    label_id = tf.argmax(probs, axis=-1, output_type=tf.int32)
    out = {"probabilities": probs, "label": tf.gather(names, label_id), "label_id": label_id}
    if multi_label:
        mask = probs >= tf.constant(np.broadcast_to(np.asarray(threshold, np.float32), (len(class_names),)))
        # Index 0 of the padded names is "": a gather, since TFLite cannot select strings.
        index = tf.where(mask, tf.range(1, len(class_names) + 1, dtype=tf.int32), 0)
        out["label_mask"] = mask
        out["labels"] = tf.gather(tf.concat([[""], names], 0), index)
    return out


# Reading exports back.

def _versions(model_dir: str) -> typing.List[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(e.name) for e in os.scandir(model_dir)
                  if e.is_dir() and e.name.isdigit() and os.path.exists(os.path.join(e.path, SAVED_MODEL_FILE)))


def find_export(path: str) -> typing.Optional[str]:
    """The SavedModel folder that `path` names, or None if `path` is no export.

    `path` may be a version folder, a model folder (its latest version is
    used) or the export base folder holding a single model.
    """
    if os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    versions = _versions(path)
    if versions:
        return os.path.join(path, str(versions[-1]))
    if not os.path.isdir(path):
        return None
    models = sorted(e.name for e in os.scandir(path) if e.is_dir() and _versions(e.path))
    if len(models) > 1:
        raise UsageError(f"{path} holds several exported models ({', '.join(models)}): "
                         f"name one, e.g. {os.path.join(path, models[0])}")
    if models:
        return find_export(os.path.join(path, models[0]))
    return None


def read_metadata(version_dir: str) -> dict:
    path = os.path.join(version_dir, METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class ServedModel:
    """An exported SavedModel called through its bytes signature, as a server would.

    Args:
        version_dir: a SavedModel folder written by `tfl export`.

    Examples:
        >>> served = ServedModel("exports/ants/1")
        >>> served.class_names
        ['ants', 'bees']
    """

    def __init__(self, version_dir: str):
        import tensorflow as tf

        self.path = version_dir
        self.loaded = tf.saved_model.load(version_dir)
        if "serving_default" not in self.loaded.signatures:
            raise UsageError(f"{version_dir} has no serving_default signature: is it a tfl export?")
        self.signature = self.loaded.signatures["serving_default"]
        if BYTES_INPUT not in self.signature.structured_input_signature[1]:
            raise UsageError(f"{version_dir} is a SavedModel but not a tfl export (its serving_default "
                             f"does not take {BYTES_INPUT}): export it with tfl export RUN")
        self.metadata = read_metadata(version_dir)
        self.class_names = [n.decode() for n in self.loaded.class_names[0].numpy()]
        self.multi_label = bool(self.metadata.get("multi_label"))
        # The thresholds the graph applies (exports before per-label thresholds: the metadata's one value).
        stored = getattr(self.loaded, "thresholds", None)
        self.thresholds = (stored[0].numpy().astype(np.float64) if stored is not None
                           else np.full(len(self.class_names), float(self.metadata.get("threshold", 0.5))))

    def probabilities(self, contents: typing.Sequence[bytes]) -> np.ndarray:
        """Probabilities [N, C] for encoded images; a bad image raises TflError."""
        import tensorflow as tf

        try:
            out = self.signature(**{BYTES_INPUT: tf.constant(list(contents), dtype=tf.string)})
        except tf.errors.InvalidArgumentError as e:
            raise TflError(error_line(e.message)) from None
        return out["probabilities"].numpy()

    def predict_images(self, images) -> np.ndarray:
        """Probabilities [N, C] of float32 RGB 0..255 images [N, S, S, 3] (the `predict_images` signature)."""
        import tensorflow as tf

        return self.loaded.signatures["predict_images"](**{TENSOR_INPUT: tf.convert_to_tensor(images)})[
            "probabilities"].numpy()

    def predict_files(self, paths: typing.Sequence[str], batch_size: int = 32) -> typing.List[
            typing.Union[np.ndarray, str]]:
        """Per file: its probabilities, or why it could not be read."""
        results: list = []
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            contents = [_read(p) for p in batch]
            try:
                results += list(self.probabilities(contents))
            except TflError:
                # One undecodable file fails the whole request: retry one by one to name it.
                for c in contents:
                    try:
                        results.append(self.probabilities([c])[0])
                    except TflError as e:
                        results.append(f"cannot decode ({e})")
        return results


def error_line(message: str) -> str:
    """The op's own reason in a TensorFlow graph error ("Input is empty.")."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith(
        ("\t", " ", "Graph execution error", "Detected at node", "<stack traces"))]
    return lines[-1] if lines else message.strip()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
