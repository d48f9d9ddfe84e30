"""Losses Keras does not have: binary cross-entropy with per-label weights.

Keras' `class_weight` takes one weight per class of a single-label target; it
cannot weigh the labels of a multi-hot target. A multi-label run with
`--class-weight balanced` trains instead with `WeightedBinaryCrossentropy`,
which weighs each label's term by whether the label is present or absent
(`tfl.data.checks.balanced_label_weights`). The class is registered with
Keras' serialisation under the package `tfl`, as the preprocessing layer is,
so a saved model that was compiled with it loads in safe mode
(`tfl.models.classifier.register_layers` registers both).
"""

from __future__ import annotations

import typing

_CLASS = None


def _define():
    import keras

    @keras.saving.register_keras_serializable(package="tfl")
    class WeightedBinaryCrossentropy(keras.losses.Loss):
        """Binary cross-entropy whose label `c` weighs `present[c]` where the label is set, `absent[c]` where not.

        Args:
            present: per label, the weight of its term for an image that has it.
            absent: per label, the weight for an image that lacks it.
            label_smoothing: squeezes the targets towards 0.5, as Keras' own.

        The per-image loss is the mean of the weighted terms over the labels,
        as `keras.losses.BinaryCrossentropy` averages its unweighted ones.
        """

        def __init__(self, present: typing.Sequence[float], absent: typing.Sequence[float],
                     label_smoothing: float = 0.0, name: str = "weighted_binary_crossentropy", **kwargs):
            super().__init__(name=name, **kwargs)
            self.present = [float(w) for w in present]
            self.absent = [float(w) for w in absent]
            self.label_smoothing = float(label_smoothing)

        def call(self, y_true, y_pred):
            ops = keras.ops
            y_true = ops.cast(y_true, y_pred.dtype)
            # Weights from the unsmoothed targets: smoothing changes the target, not which label is present.
            weights = (y_true * ops.convert_to_tensor(self.present, y_pred.dtype)
                       + (1.0 - y_true) * ops.convert_to_tensor(self.absent, y_pred.dtype))
            if self.label_smoothing:
                y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            terms = ops.binary_crossentropy(y_true, y_pred)
            return ops.mean(terms * weights, axis=-1)

        def get_config(self):
            return {**super().get_config(), "present": self.present, "absent": self.absent,
                    "label_smoothing": self.label_smoothing}

    return WeightedBinaryCrossentropy


def register():
    """Defines and registers the loss classes with Keras (once); returns `WeightedBinaryCrossentropy`."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _define()
    return _CLASS


def weighted_binary_crossentropy(weights: typing.Sequence[typing.Tuple[float, float]], label_smoothing: float = 0.0):
    """The loss for per-label `(present, absent)` weights (`balanced_label_weights`' output).

    Examples:
        >>> loss = weighted_binary_crossentropy([(2.5, 0.625), (1.0, 1.0)])
        >>> float(loss([[1, 0]], [[0.9, 0.2]]))  # (2.5 * -log 0.9 + 1.0 * -log 0.8) / 2
        0.2432...
    """
    return register()([w for w, _ in weights], [w for _, w in weights], label_smoothing=label_smoothing)
