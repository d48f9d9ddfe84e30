"""Stage 2 on cached activations of the backbone's frozen bottom.

Stage 2 trains the top of the backbone; every layer below the first
unfrozen one stays frozen and in inference mode, so its output for an image
never changes. As for stage 1's features, those activations are computed
once per image and per augmented copy (in the same pass as stage 1's
features, when stage 1 runs), and stage 2 trains `top`: a model made of the
classifier's own layer objects from the cut to the head, so training it
trains the classifier. Epoch `e` uses copy `e % copies`. Without
augmentation this is the same training as end to end, step for step.

The cut is used only when its activations fit the feature memory budget and
stage 2 uses one learning rate for all layers (layer groups and gradual
unfreezing need the whole backbone); otherwise stage 2 feeds images.
"""

from __future__ import annotations

import math
import sys
import time
import typing

import numpy as np

from tfl import _compat
from tfl.models import classifier as model_lib


class BottomSplit:
    """A tfl classifier cut where stage 2's trainable layers begin.

    Args:
        model: a tfl classifier.
        unfrozen: indices of the backbone layers stage 2 unfreezes.

    Attributes:
        top: cut activations -> class scores (the layers from the cut, the
            pooling and the head; shared with `model`).
        nbytes_per_image: bytes of one image's cut activations.

    Examples:
        >>> split = BottomSplit(model, model_lib.parse_unfreeze("2blocks", backbone, block_ids))
        >>> split.top.input_shape
        (None, 14, 14, 128)
    """

    def __init__(self, model, unfrozen: typing.Sequence[int]):
        import keras
        import tensorflow as tf

        backbone = model_lib.backbone_of(model)
        first = min(unfrozen)
        index = {id(layer): i for i, layer in enumerate(backbone.layers)}
        cut = []  # tensors made below the first unfrozen layer and used from it on
        for layer in backbone.layers[first:]:
            for t in _compat.layer_input_tensors(layer):
                if index.get(id(_compat.producing_layer(t)), first) < first and all(t is not c for c in cut):
                    cut.append(t)
        single = len(cut) == 1
        bottom_part = keras.Model(backbone.input, cut[0] if single else cut, name="frozen_bottom")
        top_part = keras.Model(cut[0] if single else cut, backbone.output, name="unfrozen_top")

        image = keras.Input(model.input_shape[1:], name="image")
        bottom = keras.Model(image, bottom_part(model.get_layer("preprocess")(image), training=False))
        inputs = [keras.Input(t.shape[1:], dtype=t.dtype, name=f"cut_{i}") for i, t in enumerate(cut)]
        pooled = model.get_layer("pool")(top_part(inputs[0] if single else inputs, training=False))
        self.top = keras.Model(inputs[0] if single else inputs, model.get_layer("head")(pooled), name="tfl_top")
        # Checkpoints hold the classifier's weights whichever way stage 2 is fed, so a checkpoint
        # always loads into the classifier (object.__setattr__: Keras must not track these).
        object.__setattr__(self.top, "save_weights", model.save_weights)
        object.__setattr__(self.top, "load_weights", model.load_weights)
        self.model = model
        pooling = keras.Model(inputs[0] if single else inputs, pooled)
        self.single = single
        self.nbytes_per_image = sum(int(np.prod(t.shape[1:])) * np.dtype(t.dtype).itemsize for t in cut)
        self.shapes = [tuple(t.shape[1:]) for t in cut]

        spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        names = [layer.name for layer in model.layers]
        augment = model.get_layer("augmentation") if "augmentation" in names else None

        def both(x):
            b = bottom(x, training=False)
            return b, pooling(b, training=False)

        self.plain = tf.function(both, input_signature=spec, autograph=False)
        self.augmented = None if augment is None else tf.function(
            lambda x: both(augment(x, training=True)), input_signature=spec, autograph=False)

    def describe(self) -> str:
        return " + ".join("x".join(str(d) for d in s) for s in self.shapes)


def stage2_split(model, cfg, block_ids) -> typing.Optional[BottomSplit]:
    """The cut for `cfg`'s stage 2, or None when stage 2 must train on images."""
    from tfl import config as config_lib

    stage = cfg.stage2
    if not stage.epochs or getattr(stage, "gradual", False):
        return None
    try:
        if config_lib.parse_lr(stage.lr, "stage2.lr")[0] == "range":
            return None
    except (AttributeError, ValueError):
        return None
    unfrozen = model_lib.parse_unfreeze(stage.unfreeze, model_lib.backbone_of(model), block_ids)
    if not unfrozen or min(unfrozen) <= 1:  # nothing below the cut but the input
        return None
    return BottomSplit(model, unfrozen)


def compute(split: BottomSplit, train_images, val_images, copies: int):
    """(train activations per copy, val activations, train features per copy, val features).

    Activations are a list of arrays, one per cut tensor; features are the
    pooled backbone outputs stage 1 trains on.
    """
    def run(fn, dataset):
        acts, feats = [], []
        for x, _ in dataset:
            b, f = fn(x)
            acts.append([np.asarray(v) for v in (b if isinstance(b, (list, tuple)) else [b])])
            feats.append(np.asarray(f))
        return [np.concatenate(parts) for parts in zip(*acts)], np.concatenate(feats)

    fns = [split.plain] + [split.augmented] * (copies - 1)
    train = [run(fn, train_images) for fn in fns]
    val = run(split.plain, val_images)
    return [a for a, _ in train], val[0], [f for _, f in train], val[1]


def datasets(split, train, val, train_labels, val_labels, label_fn, batch_size: int, seed: int):
    """(endless train batches, one copy per epoch; val batches) of cut activations."""
    import tensorflow as tf

    from tfl.data.loading import with_options

    def elements(arrays, labels):
        x = arrays[0] if split.single else tuple(arrays)
        return tf.data.Dataset.from_tensor_slices((x, labels))

    parts = None
    for i, arrays in enumerate(train):
        ds = elements(arrays, train_labels).shuffle(len(train_labels), seed=seed + i, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        parts = ds if parts is None else parts.concatenate(ds)
    train_ds = with_options(parts.repeat().map(lambda x, y: (x, label_fn(y))).prefetch(2))
    val_ds = elements(val, val_labels).batch(batch_size).map(lambda x, y: (x, label_fn(y))).cache()
    return train_ds, with_options(val_ds.prefetch(2))


def stage2_inputs(trainer, state):
    """(model, train_ds, val_ds) of stage 2 on cached activations, or None to train on images.

    Uses the activations stage 1's feature pass kept; a resumed run computes
    them again. The choice is recorded in the stage's state so that a resumed
    stage trains the same model on the same kind of inputs.
    """
    from tfl.training import activations as features

    cfg = trainer.config
    if state.data.get("inputs", "cut" if not state.epochs_done else "images") != "cut":
        return None  # this stage already trained on images: a resumed run goes on the same way
    cache = getattr(trainer, "feature_cache", None)
    split = getattr(cache, "split", None) if getattr(cache, "bottom", None) else None
    if split is not None and split.model is not trainer.model:
        split = None  # a cache shared from another model: its cut may not be this one's
    t = time.time()
    if split is None:
        split = stage2_split(trainer.model, cfg, trainer.block_ids)
        copies = min(cfg.augment_copies if cfg.model.augment else 1, max(1, cfg.stage2.epochs))
        n = copies * len(trainer.data.train) + len(trainer.data.val)
        if split is None or n * split.nbytes_per_image > features.default_memory_budget():
            state.commit(inputs="images")
            return None
        bs = cfg.data.batch_size
        train_acts, val_acts, _, _ = compute(split, trainer.data.train.dataset(trainer.image_size, bs),
                                             trainer.data.val.dataset(trainer.image_size, bs), copies)
        how = f"computed in {time.time() - t:.1f}s"
    else:
        train_acts, val_acts = cache.bottom
        how = "kept from stage 1's pass"
    state.commit(inputs="cut")
    print(f"[tfl] stage 2: activations of the frozen bottom ({split.describe()}) of "
          f"{len(trainer.data.train)} images x {len(train_acts)} cop{'y' if len(train_acts) == 1 else 'ies'} "
          f"{how}; training the unfrozen top on them", file=sys.stderr, flush=True)
    train_ds, val_ds = datasets(split, train_acts, val_acts, np.asarray(trainer.data.train.labels, np.int32),
                                np.asarray(trainer.data.val.labels, np.int32), trainer._labels,
                                cfg.data.batch_size, cfg.seed)
    steps = math.ceil(len(trainer.data.train) / cfg.data.batch_size)
    if state.epochs_done % len(train_acts):
        # Resumed mid-stage: start on the copy that the next epoch would have used.
        train_ds = train_ds.skip(state.epochs_done % len(train_acts) * steps)
    return split.top, train_ds, val_ds
