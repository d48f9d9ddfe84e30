"""Time per image of a model on this machine, at batch 1 (one request) and at a batch (throughput).

The model is called through the function that serves it (a traced
`tf.function` with a fixed input signature, or its LiteRT model), on random
0..255 images, after warm-up calls that trace it and fill the caches. The batch-1 figure is the median over repeated
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


def measure(fn, image_size: int, batch_size: int = 32, seed: int = 0, batch: bool = True) -> Latency:
    """Median time per image of `fn(images)` at batch 1 and at `batch_size`.

    Args:
        fn: a model's inference as a function of one float32 batch `[None,
            size, size, 3]` (RGB 0..255): a traced `tf.function` (traced once
            for any batch) or a LiteRT model (`tfl.selection.engine`). The
            images go in as numpy arrays, as a request's do.
        image_size: its input side.
        batch_size: the batch of the throughput figure.
        seed: seed of the random input images.
        batch: also time batches of `batch_size` (else `batch_ms` is NaN).

    Returns:
        A `Latency`.

    Examples:
        >>> measure(activations.extractors(model)[0], 224).batch1_ms
        21.4...
    """
    rng = np.random.default_rng(seed)
    one = rng.uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    for _ in range(2):  # trace (when not yet), then warm the caches
        np.asarray(fn(one))
    single = _median_seconds(fn, one, calls=7, min_seconds=0.3)
    if not batch:
        return Latency(1000 * single, float("nan"), batch_size)
    many = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)
    np.asarray(fn(many))
    return Latency(1000 * single, 1000 * _median_seconds(fn, many, calls=3, min_seconds=0.0) / batch_size,
                   batch_size)
