"""TFLite versions of an export's tensor signature, checked through `tf.lite.Interpreter`.

The TFLite model is the SavedModel's `predict_images` signature: float32 RGB
0..255 images [batch, H, W, 3] in, resized inside to the model's size, and
`probabilities`, `label_id`, `label` (plus `label_mask` and `labels` for
multi-label models) out. Each mode is scored on the whole validation split
next to the Keras model, so the cost of quantisation is a number, not a guess.
"""

from __future__ import annotations

from tfl.errors import TflError

MODES = ("float32", "float16", "dynamic")
# Largest |TFLite - Keras| probability difference accepted in float32, and the
# most validation accuracy a quantised model may lose before the export fails.
FLOAT32_TOLERANCE = 1e-4
MAX_ACCURACY_DROP = 0.05
SIGNATURE = "predict_images"


def file_name(mode: str) -> str:
    return f"model_{mode}.tflite"


def convert(saved_model_dir: str, mode: str) -> bytes:
    """The TFLite flatbuffer of the export's `predict_images` signature, quantised as `mode` says.

    The signature keeps its dynamic height and width: the interpreter resizes
    its input to each batch, and the model resizes the images to its size.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode {mode}: use one of {', '.join(MODES)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE])
    if mode in ("float16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many types; one line says enough
        raise TflError(f"TFLite conversion ({mode}) failed: {str(e).strip().splitlines()[0]}") from None


def convert_model(call) -> bytes:
    """The float32 TFLite flatbuffer of a Keras model: images [batch, S, S, 3] RGB 0..255 in, probabilities out.

    Args:
        call: the model's traced inference function, one float32 input
            [None, S, S, 3] (`tfl.serving.prediction.compiled_call(model)`).
            The model holds its preprocessing, so the flatbuffer takes the
            same pixels as the Keras model.
    """
    import logging
    import tempfile

    import tensorflow as tf

    from tfl import _compat

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing trackable_obj": the frozen function needs none
    try:
        frozen = _compat.frozen_function(call.get_concrete_function())
        if frozen is not None:
            return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
        import keras

        with tempfile.TemporaryDirectory(prefix="tfl-tflite-") as folder:
            archive = keras.export.ExportArchive()
            archive.add_endpoint("serve", call)
            archive.write_out(folder, verbose=False)
            return tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serve"]).convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many types; one line says enough
        raise TflError(f"TFLite conversion failed: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") \
            from None
    finally:
        absl.setLevel(level)


def verify(content: bytes, dataset, keras_probs, labels, mode: str, thresholds=None) -> dict:
    """Runs the TFLite model over `dataset`, compares with the Keras model; fails loudly on a mismatch.

    Args:
        content: the TFLite flatbuffer.
        dataset: batches of (float32 model-sized images, int labels).
        keras_probs: the Keras model's probabilities on the same images.
        labels: their true labels (multi-label models: multi-hot rows).
        mode: the quantisation mode (sets the acceptance test).
        thresholds: multi-label models: the per-label thresholds; accuracy
            is then exact match (every label of an image right).

    Returns:
        `accuracy`, `keras_accuracy`, `max_abs_diff`, `agreement` (share of
        images with the same top class, or multi-label the same labels) and
        `num_images`.
    """
    import warnings

    import numpy as np
    import tensorflow as tf

    from tfl.serving import saved_model as _serving

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter warns that LiteRT will replace it
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=2)
    runner = interpreter.get_signature_runner(SIGNATURE)
    lite = np.concatenate([runner(**{_serving.TENSOR_INPUT: images.numpy()})["probabilities"]
                           for images, _ in dataset])
    truth = labels if thresholds is None else np.asarray(labels).astype(bool)

    def predicted(probs):
        return probs.argmax(1) if thresholds is None else probs >= np.asarray(thresholds)[None, :]

    def same(a, b):  # per image: the same class, or multi-label the same set of labels
        return a == b if a.ndim == 1 else (a == b).all(1)

    out = {
        "mode": mode,
        "num_images": int(len(labels)),
        "accuracy": float(same(predicted(lite), truth).mean()),
        "keras_accuracy": float(same(predicted(keras_probs), truth).mean()),
        "max_abs_diff": float(np.abs(lite - keras_probs).max()),
        "agreement": float(same(predicted(lite), predicted(keras_probs)).mean()),
    }
    if mode == "float32" and out["max_abs_diff"] > FLOAT32_TOLERANCE:
        raise TflError(f"TFLite float32 model differs from the Keras model by {out['max_abs_diff']:.2e} "
                       f"(> {FLOAT32_TOLERANCE:g}) on the validation images")
    if out["keras_accuracy"] - out["accuracy"] > MAX_ACCURACY_DROP:
        raise TflError(f"TFLite {mode} model loses {out['keras_accuracy'] - out['accuracy']:.3f} validation "
                       f"accuracy ({out['accuracy']:.4f} vs Keras {out['keras_accuracy']:.4f}); "
                       "use --tflite float32 or float16")
    return out
