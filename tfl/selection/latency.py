"""Time per image of a model on this machine, at batch 1 (one request) and at a batch (throughput).

The model is called through one `tf.function` with a fixed input signature
(as a served model is), on random 0..255 images, after warm-up calls that
trace it and fill the caches. The batch-1 figure is the median over repeated
calls, so one call slowed by another process does not move it. `tfl pick`
takes the throughput from its feature pass instead (the same batches, timed
as they run), so it measures only batch 1 here (`batch=False`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np


@dataclasses.dataclass
class Latency:
    """Milliseconds per image.

    Args:
        batch1_ms: one image per call (what a request waits for).
        batch_ms: per image, at `batch_size` images per call (throughput).
        batch_size: the batch of `batch_ms`.
    """

    batch1_ms: float
    batch_ms: float
    batch_size: int


def _median_seconds(fn, x, calls: int, min_seconds: float) -> float:
    times = []
    start = time.perf_counter()
    while len(times) < calls or (time.perf_counter() - start < min_seconds and len(times) < 50):
        t = time.perf_counter()
        np.asarray(fn(x))  # waits for the result (a tensor's, or LiteRT's array)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(model, image_size: int, batch_size: int = 32, seed: int = 0, batch: bool = True,
            fn=None) -> Latency:
    """Median time per image of `model(images, training=False)` at batch 1 and at `batch_size`.

    Args:
        model: a Keras model taking `(batch, size, size, 3)` float32 RGB 0..255
            (or None with `fn`).
        image_size: its input side.
        batch_size: the batch of the throughput figure.
        seed: seed of the random input images.
        batch: also time batches of `batch_size` (else `batch_ms` is NaN).
        fn: instead of tracing `model`, time this function of one input
            `[None, size, size, 3]`: a traced one (not traced again when it
            was already) or a LiteRT model (`tfl.selection.engine`).

    Returns:
        A `Latency`.

    Examples:
        >>> measure(model, 224).batch1_ms
        21.4...
    """
    import tensorflow as tf

    if fn is None:
        spec = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32)]
        fn = tf.function(lambda x: model(x, training=False), input_signature=spec, autograph=False)
    rng = np.random.default_rng(seed)
    # A traced function takes tensors; anything else (a LiteRT model) takes numpy arrays.
    as_input = tf.constant if hasattr(fn, "get_concrete_function") else np.asarray
    one = as_input(rng.uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32))
    for _ in range(2):  # trace, then warm the caches
        np.asarray(fn(one))
    single = _median_seconds(fn, one, calls=7, min_seconds=0.3)
    if not batch:
        return Latency(1000 * single, float("nan"), batch_size)
    many = as_input(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32))
    np.asarray(fn(many))
    return Latency(1000 * single, 1000 * _median_seconds(fn, many, calls=3, min_seconds=0.0) / batch_size,
                   batch_size)
