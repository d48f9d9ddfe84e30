"""The cut of a tfl classifier where stage 2's trainable layers begin.

Below the first unfrozen layer nothing trains in stage 2, so its output for an
image never changes: `BottomSplit` builds the frozen bottom (image -> cut
activations, with the pooled features in the same pass) and the trainable top
(cut activations -> class scores, sharing the classifier's layers), and
`compute_both` runs the bottom over a dataset once, for every copy.
"""

from __future__ import annotations

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
            pooling and the head; shared with `model`, so training `top`
            trains the classifier).
        first: index of the first unfrozen backbone layer (where the cut is).
        nbytes_per_image: bytes of one image's cut activations.

    Examples:
        >>> split = BottomSplit(model, Unfreeze.parse("2blocks").layer_indices(len(backbone.layers), block_ids))
        >>> split.top.input_shape
        (None, 14, 14, 128)
    """

    def __init__(self, model, unfrozen):
        import keras
        import tensorflow as tf

        backbone = model_lib.backbone_of(model)
        first = self.first = min(unfrozen)
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
        self.bottom = tf.function(lambda x: bottom(x, training=False), input_signature=spec, autograph=False)
        self.augmented = None if augment is None else tf.function(
            lambda x: both(augment(x, training=True)), input_signature=spec, autograph=False)

    def describe(self) -> str:
        return " + ".join("x".join(str(d) for d in s) for s in self.shapes)


def compute_both(split: BottomSplit, train_images, val_images, copies: int, progress=None, plain=None):
    """(train activations per copy, val activations, train features per copy, val features).

    One pass over the training images computes every copy from the same
    decoded batch (the images are decoded once, whatever the number of copies).
    `plain`: (the plain copy's features, the validation features) already
    computed: those passes then run the frozen bottom only (its activations
    are still needed; the features are not computed again).
    """
    def outputs(out, fn):
        b, f = out if fn is not split.bottom else (out, None)
        acts = [np.asarray(v) for v in (b if isinstance(b, (list, tuple)) else [b])]
        return acts, None if f is None else np.asarray(f)

    first = split.plain if plain is None else split.bottom
    fns = [first] + [split.augmented] * (copies - 1)
    train = [([], []) for _ in fns]
    for per_fn in calls(fns, train_images, progress, counted=[fn is not split.bottom for fn in fns]):
        for (acts, feats), (fn, out) in zip(train, zip(fns, per_fn)):
            a, f = outputs(out, fn)
            acts.append(a)
            feats.append(f)
    val_acts, val_feats = [], []
    for (out,) in calls([first], val_images, progress, counted=[plain is None]):
        a, f = outputs(out, first)
        val_acts.append(a)
        val_feats.append(f)

    def joined(acts, feats):
        return [np.concatenate(parts) for parts in zip(*acts)], None if feats[0] is None else np.concatenate(feats)

    train = [joined(*t) for t in train]
    val = joined(val_acts, val_feats)
    if plain is not None:
        train[0], val = (train[0][0], plain[0]), (val[0], plain[1])
    return [a for a, _ in train], val[0], [f for _, f in train], val[1]


def calls(fns, dataset, progress=None, counted=None):
    """For each batch of `dataset` (decoded once), the outputs of every function in `fns`, in order.

    `counted[k]`: whether function k's images advance `progress` (default: all).
    """
    import tensorflow as tf

    full = None
    for x, _ in dataset:
        n = int(x.shape[0])
        full = full or n
        if n < full:
            # The last, partial batch is padded to the full size and its outputs cut back: a new batch
            # shape makes oneDNN build its kernels again, about a second for a mid-size backbone.
            x = tf.concat([x, tf.zeros([full - n, *x.shape[1:]], x.dtype)], axis=0)
            outs = [tf.nest.map_structure(lambda t, n=n: t[:n], fn(x)) for fn in fns]
        else:
            outs = [fn(x) for fn in fns]
        if progress is not None:
            progress.update(n * sum(1 for k in range(len(fns)) if counted is None or counted[k]))
        yield outs
