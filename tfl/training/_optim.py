"""Optimizers and learning-rate schedules for one training stage."""

from __future__ import annotations

import math

from tfl.config import StageConfig


def learning_rate(stage: StageConfig, steps_per_epoch: int):
    """A float, or a warm-up + cosine schedule over the whole stage."""
    import keras

    total = max(1, stage.epochs * steps_per_epoch)
    warmup = min(total - 1, int(math.ceil(stage.warmup_epochs * steps_per_epoch)))
    if stage.schedule == "constant" and warmup == 0:
        return stage.lr
    if stage.schedule == "constant":
        # Warm-up to a constant rate: a cosine "decay" to the same rate.
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(1, total - warmup), alpha=1.0, warmup_target=stage.lr, warmup_steps=warmup)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(stage.lr, total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total - warmup, alpha=0.0, warmup_target=stage.lr, warmup_steps=warmup)


def make_optimizer(stage: StageConfig, steps_per_epoch: int, groups=None, lr=None):
    """The stage's optimizer with its schedule.

    Args:
        stage: the stage configuration.
        steps_per_epoch: optimizer steps per epoch (for the schedule).
        groups: a `tfl.training._discriminative.LayerGroups`: per-variable learning
            rates (discriminative rates, gradual unfreezing).
        lr: the peak learning rate when `stage.lr` is not a number (`auto`
            resolved by the LR finder, or the high end of a range).
    """
    import dataclasses

    import keras

    if lr is not None or not isinstance(stage.lr, (int, float)):
        stage = dataclasses.replace(stage, lr=float(lr if lr is not None else stage.lr))
    rate = learning_rate(stage, steps_per_epoch)
    wd = stage.weight_decay or None
    if stage.optimizer == "adam":
        cls, kwargs = keras.optimizers.Adam, dict(weight_decay=wd)
    elif stage.optimizer == "adamw":
        cls, kwargs = keras.optimizers.AdamW, dict(weight_decay=stage.weight_decay or 1e-4)
    elif stage.optimizer == "sgd":
        cls, kwargs = keras.optimizers.SGD, dict(momentum=stage.momentum, nesterov=True, weight_decay=wd)
    elif stage.optimizer == "rmsprop":
        cls, kwargs = keras.optimizers.RMSprop, dict(momentum=stage.momentum, weight_decay=wd)
    else:
        raise ValueError(f"unknown optimizer {stage.optimizer}")
    if groups is None:
        return cls(rate, **kwargs)
    from tfl.training import _discriminative

    optimizer = _discriminative.scaled_class(cls)(rate, **kwargs)
    _discriminative.attach(optimizer, groups.multipliers(0))
    return optimizer
