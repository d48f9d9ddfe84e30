"""Discriminative learning rates and gradual unfreezing, the Keras 3 way.

Keras 3 has no per-layer learning rates and no multi-optimizer, so the stage's
optimizer is subclassed: its `update_step` multiplies the (scheduled) learning
rate by a per-variable factor read from a small vector variable. The layer
groups are the backbone's blocks (bottom to top) and then the head; with
`lr = "LOW..HIGH"` group g of G gets `LOW * (HIGH / LOW) ** (g / (G - 1))`,
so the head trains at HIGH and the earliest unfrozen block at LOW. The
schedule's peak is HIGH and each factor is the group's rate / HIGH.

Gradual unfreezing uses the same vector: a block that is not released yet has
factor 0, and a callback releases one more group from the top as the stage
proceeds (`released_groups`). Every block the stage will train is trainable
from the first step, so the optimizer's variables never change mid-stage and
per-epoch checkpoints resume exactly.

The subclass reports itself as its Keras base class (`Adam`, `SGD`, ...), so a
saved model holds a plain optimizer config and loads without tfl.
"""

from __future__ import annotations

import math
import typing

from tfl.models import classifier as model_lib

_CLASSES: dict = {}


def scaled_class(base):
    """A subclass of the optimizer class `base` with per-variable learning-rate factors.

    Instances get `lr_multipliers`, a float32 vector variable (one entry per
    trainable variable, in the order the optimizer is built with), before
    their first step: see `attach`.
    """
    if base in _CLASSES:
        return _CLASSES[base]

    from keras import ops

    class Scaled(base):
        def update_step(self, gradient, variable, learning_rate):
            factor = self.lr_multipliers[self._get_variable_index(variable)]
            learning_rate = ops.cast(learning_rate, "float32") * factor
            if self.weight_decay is not None and self._use_weight_decay(variable):
                # Decoupled decay at the variable's own rate (so a held-back block does not decay).
                wd = ops.cast(self.weight_decay, variable.dtype)
                variable.assign_sub(variable * wd * ops.cast(learning_rate, variable.dtype))
            return super().update_step(gradient, variable, learning_rate)

        def _apply_weight_decay(self, variables):
            return  # done per variable in update_step

    # Serialises as the base class: a saved model needs nothing from tfl.
    Scaled.__name__ = Scaled.__qualname__ = base.__name__
    Scaled.__module__ = base.__module__
    _CLASSES[base] = Scaled
    return Scaled


def attach(optimizer, multipliers: typing.Sequence[float]) -> None:
    """Gives a `scaled_class` optimizer its factor vector (not a Keras-tracked variable)."""
    import tensorflow as tf

    # A raw tf.Variable: Keras does not track it, so optimizer checkpoints and
    # the saved model keep the plain optimizer's variables.
    optimizer.lr_multipliers = tf.Variable(list(map(float, multipliers)), dtype=tf.float32, trainable=False,
                                           name="lr_multipliers")


def geometric_rates(low: float, high: float, n: int) -> typing.List[float]:
    """`n` learning rates from `low` to `high`, evenly spaced on a log scale."""
    if n == 1:
        return [high]
    return [low * (high / low) ** (g / (n - 1)) for g in range(n)]


class LayerGroups:
    """The trainable variables of a tfl classifier split into groups: backbone blocks, then the head.

    Args:
        model: a tfl classifier with its stage-2 layers already unfrozen.
        block_ids: block index of each layer of the backbone.
        low: learning rate of the earliest group (`None`: the same rate for all).
        high: learning rate of the head (the schedule's peak).
        gradual: release one more block from the top as the stage proceeds.
        epochs: the stage's number of epochs (for `gradual`).

    Examples:
        >>> groups = LayerGroups(model, block_ids, low=1e-5, high=1e-3)
        >>> groups.rates
        [1e-05, 0.0001, 0.001]
    """

    def __init__(self, model, block_ids: typing.Sequence[int], low: typing.Optional[float], high: float,
                 gradual: bool = False, epochs: int = 1):
        backbone = model_lib.backbone_of(model)
        block_of = {}
        for layer, block in zip(backbone.layers, block_ids):
            for v in layer.trainable_weights:
                block_of[id(v)] = block
        self.variables = list(model.trainable_variables)
        blocks = sorted({block_of[id(v)] for v in self.variables if id(v) in block_of})
        rank = {b: i for i, b in enumerate(blocks)}
        head = len(blocks)
        # Anything outside the backbone (the head) is the last, fastest group.
        self.group_of = [rank.get(block_of.get(id(v)), head) for v in self.variables]
        self.blocks = blocks
        self.num_groups = head + 1
        self.rates = geometric_rates(low, high, self.num_groups) if low else [high] * self.num_groups
        self.high = high
        self.gradual = gradual
        self.epochs = max(1, epochs)

    def released_groups(self, epoch: int) -> int:
        """Backbone groups (from the top) trained in 0-based `epoch`; all when not gradual."""
        n = len(self.blocks)
        if not self.gradual or n == 0:
            return n
        return min(n, math.ceil((epoch + 1) * n / self.epochs))

    def multipliers(self, epoch: int = 0) -> typing.List[float]:
        """Each variable's learning-rate factor (relative to `high`) in `epoch`."""
        first_trained = len(self.blocks) - self.released_groups(epoch)
        return [self.rates[g] / self.high if g >= first_trained else 0.0 for g in self.group_of]

    def describe(self, epoch: int = 0) -> str:
        rates = ", ".join(f"{r:.2g}" for r in self.rates)
        text = f"{len(self.blocks)} backbone block groups + head, learning rates {rates}"
        if self.gradual:
            text += f"; gradual unfreezing: {self.released_groups(epoch)} of {len(self.blocks)} blocks released"
        return text

    def callback(self):
        """A Keras callback that sets the factors at the start of every epoch (gradual unfreezing)."""
        import keras

        groups = self

        class ReleaseBlocks(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                opt = self.model.optimizer
                opt = getattr(opt, "inner_optimizer", opt)  # mixed precision's LossScaleOptimizer
                opt.lr_multipliers.assign(groups.multipliers(epoch))

        return ReleaseBlocks()
