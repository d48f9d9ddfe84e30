"""The official Keras transfer-learning guide's recipe, as the baseline tfl must beat.

This is the recipe of https://keras.io/guides/transfer_learning/ ("the typical
transfer-learning workflow", end-to-end example), written once so that the
tests, the benchmarks and the choice of tfl's defaults all compare against the
same implementation:

    image_dataset_from_directory (batch 32, bilinear resize)
    -> RandomFlip("horizontal") + RandomRotation(0.1)   (in the model)
    -> the backbone's input scaling
    -> frozen base called with training=False
    -> GlobalAveragePooling2D -> Dropout(0.2) -> Dense(num_classes) (logits)
    stage 1: Adam(1e-3) on the frozen base for `epochs`
    stage 2: base_model.trainable = True (everything), Adam(1e-5) for
             `fine_tune_epochs`.

The guide keeps no best epoch: its result is the model after the last epoch
of each stage. Both the last and the best epoch are reported here.
"""

from __future__ import annotations

import os
import typing


def _split_dirs(data_path: str) -> typing.Tuple[str, str]:
    from tfl.errors import UsageError

    path = data_path[len("folder:"):] if data_path.startswith("folder:") else data_path
    train, val = os.path.join(path, "train"), os.path.join(path, "val")
    if not (os.path.isdir(train) and os.path.isdir(val)):
        raise UsageError(f"{path} needs train/<class>/ and val/<class>/ folders for the Keras guide recipe")
    return train, val


def keras_guide_recipe(data_path: str, backbone: str = "mobilenet_025", image_size: int = 224,
                       epochs: int = 10, fine_tune_epochs: int = 5, weights: typing.Optional[str] = "imagenet",
                       batch_size: int = 32, seed: int = 42, verbose: int = 0, autotune: bool = True) -> dict:
    """Trains the Keras guide's two-stage recipe and returns both stages' validation accuracy.

    Args:
        data_path: a folder (or `folder:PATH`) with `train/<class>/` and
            `val/<class>/` image folders.
        backbone: a tfl backbone registry name.
        image_size: square input side in pixels.
        epochs: frozen-base epochs (Adam 1e-3).
        fine_tune_epochs: epochs with the whole base trainable (Adam 1e-5).
        weights: `imagenet`, `None` or a weights file for the backbone.
        batch_size: batch size (the guide's 32).
        seed: seed of the shuffling, augmentation and head initialisation.
        verbose: Keras verbosity of `fit`.
        autotune: leave tf.data's autotuning on, as the guide does. Off
            gives the same numbers (the pipeline is deterministic) without
            the seconds that autotuning's thread pool idles at the end of
            some epochs on small CPUs; the tests use that.

    Returns:
        A dict with `stage1` and `stage2` (validation accuracy after the
        stage's last epoch, what the guide's user ends with), `stage1_best`
        and `stage2_best` (best epoch of each stage), `history1`, `history2`
        (per-epoch `val_accuracy`) and `seconds`.

    Examples:
        >>> r = keras_guide_recipe("hymenoptera_data", "mobilenet_025", 224, epochs=10, fine_tune_epochs=5)
        >>> r["stage1"], r["stage2"]
        (0.84..., 0.85...)
    """
    import time

    import keras

    from tfl.models import backbones
    from tfl.models import classifier as model_lib

    t0 = time.time()
    keras.utils.set_random_seed(seed)
    train_dir, val_dir = _split_dirs(data_path)
    size = (image_size, image_size)
    train_ds = keras.utils.image_dataset_from_directory(train_dir, image_size=size, batch_size=batch_size,
                                                        seed=seed, shuffle=True, verbose=False)
    val_ds = keras.utils.image_dataset_from_directory(val_dir, image_size=size, batch_size=batch_size,
                                                      shuffle=False, class_names=train_ds.class_names,
                                                      verbose=False)
    num_classes = len(train_ds.class_names)
    # The guide caches and prefetches its datasets.
    train_ds, val_ds = train_ds.cache().prefetch(2), val_ds.cache().prefetch(2)
    if not autotune:
        import tensorflow as tf

        options = tf.data.Options()
        options.autotune.enabled = False
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)

    spec = backbones.get_backbone(backbone)
    base = backbones.build_backbone(spec, image_size, weights)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.RandomFlip("horizontal", seed=seed)(inputs)
    x = keras.layers.RandomRotation(0.1, seed=seed)(x)
    # The guide's Rescaling(1/127.5, offset=-1) is Xception's scaling; each
    # backbone gets its own preprocessing here.
    x = model_lib.preprocess_layer(spec.name)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)

    def compile_fit(lr, n):
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        if n <= 0:
            return []
        history = model.fit(train_ds, epochs=n, validation_data=val_ds, verbose=verbose)
        return [float(v) for v in history.history["val_accuracy"]]

    h1 = compile_fit(1e-3, epochs)
    base.trainable = True
    h2 = compile_fit(1e-5, fine_tune_epochs)
    nan = float("nan")
    return {"stage1": h1[-1] if h1 else nan, "stage2": h2[-1] if h2 else nan,
            "stage1_best": max(h1, default=nan), "stage2_best": max(h2, default=nan),
            "history1": h1, "history2": h2, "seconds": time.time() - t0}
