"""What runs a pick's feature passes and latency timings: TensorFlow, or LiteRT where it is installed.

On CPU, LiteRT's interpreter with XNNPACK runs MobileNets about 3x faster
than TensorFlow (MobileNetV2 at 224 px on 2 cores: 110 against 36 images/s),
which is what `tfl predict` uses by default (`--engine auto`). For a pick, the
conversion (3-5 s per MobileNet) is repaid within a few hundred images, and
the batch-1 latency is then the one `tfl predict` will see. A conversion that
fails, or whose features differ from TensorFlow's on a check batch, falls
back to TensorFlow with one line.
"""

from __future__ import annotations

import typing

import numpy as np

from tfl._logging import log
from tfl.errors import TflError

# Largest |LiteRT - TensorFlow| feature difference accepted, relative to the features' largest magnitude
# (measured: 2.4e-5 on MobileNetV2's features, which reach 5.6).
RELATIVE_TOLERANCE = 1e-4
CHECK_IMAGES = 4


def feature_runner(plain, image_size: int, engine: str = "auto", what: str = "") -> typing.Tuple[typing.Callable, str]:
    """(callable, engine name): the traced images -> features function `plain`, run by `engine`.

    Args:
        plain: a traced function of one float32 input `[None, S, S, 3]` (RGB
            0..255) returning pooled features
            (`tfl.training.activations.extractors(model)[0]`).
        image_size: S.
        engine: `auto` (LiteRT when installed), `keras` or `litert`.
        what: the candidate's name, for the fallback line.

    Returns:
        `(plain, "keras")`, or a LiteRT model called the same way (numpy
        images in, numpy features out) and `"litert"`.

    Raises:
        UsageError: `engine` unknown, or `litert` without the package.
    """
    from tfl.serving import engines

    name = engines.resolve(engine)
    if name == "keras":
        return plain, "keras"
    try:
        from tfl.serving import tflite

        lite = engines.LiteModel(tflite.convert_model(plain))
        images = np.random.default_rng(0).uniform(0, 255, (CHECK_IMAGES, image_size, image_size, 3))
        images = images.astype(np.float32)
        reference = np.asarray(plain(images))
        diff = float(np.abs(np.asarray(lite(images)) - reference).max())
        limit = RELATIVE_TOLERANCE * max(1.0, float(np.abs(reference).max()))
        if not diff <= limit:
            raise TflError(f"its LiteRT features differ from TensorFlow's by {diff:.2e} (> {limit:.1e})")
    except TflError as e:
        if engine == "litert":
            raise
        log.info(f"pick: {what or 'a candidate'}: {e}; its features and latency come from TensorFlow")
        return plain, "keras"
    return lite, "litert"
