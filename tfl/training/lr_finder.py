"""The learning-rate range test ("LR finder").

The learning rate grows exponentially from `min_lr` to `max_lr` over a few
hundred optimizer steps while the training loss of every batch is recorded
(Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`). The loss first
stays flat, then falls, then blows up; a good rate lies in the falling part.
The suggestion is fastai's "valley" by default: the longest stretch of the
smoothed curve over which the loss keeps decreasing, taken a little past its
middle. The weights are restored afterwards, so the test leaves the model as
it found it.

Stage 1 (`stage=1`) trains the head on cached backbone features, so its test
costs seconds. Stage 2 first trains the head (stage 1 as configured), then
unfreezes the stage's blocks and tests end to end on images.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import typing

from tfl.runs import atomic_path, atomic_write_json

METHODS = ("valley", "steepest", "minimum")


@dataclasses.dataclass
class LRFinderResult:
    """What the range test measured.

    Args:
        lrs: learning rate of each step.
        losses: training loss of each step's batch.
        smoothed: exponentially smoothed, bias-corrected losses.
        suggestion: the suggested learning rate (by `method`).
        method: `valley`, `steepest` or `minimum` (a tenth of the rate at
            the lowest smoothed loss).
        suggestions: the suggestion of every method.
        stage: 1 (head on cached features) or 2 (end to end).
        plot: the PNG written, if any.
    """

    lrs: typing.List[float]
    losses: typing.List[float]
    smoothed: typing.List[float]
    suggestion: float
    method: str = "valley"
    suggestions: dict = dataclasses.field(default_factory=dict)
    stage: int = 1
    plot: typing.Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, png_path: str) -> None:
        """Writes the plot to `png_path` and the numbers beside it (same name, `.json`)."""
        plot_lr_find(self, png_path)
        self.plot = png_path
        atomic_write_json(os.path.splitext(png_path)[0] + ".json", self.to_dict())


def smooth(losses: typing.Sequence[float], beta: float = 0.98) -> typing.List[float]:
    """Exponential moving average with bias correction (fastai's smoothing of the loss)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** i))
    return out


def suggest(lrs: typing.Sequence[float], smoothed: typing.Sequence[float], method: str = "valley") -> float:
    """The suggested learning rate of a range test.

    Args:
        lrs: the learning rates.
        smoothed: the smoothed losses.
        method: `valley` (fastai's default), `steepest` (most negative slope
            of the loss against log lr) or `minimum` (a tenth of the rate
            at the lowest loss).
    """
    n = len(lrs)
    if n < 3:
        return float(lrs[0]) if lrs else float("nan")
    if method == "minimum":
        i = min(range(n), key=lambda k: smoothed[k])
        return float(lrs[i]) / 10
    if method == "steepest":
        logs = [math.log(lr) for lr in lrs]
        # The first tenth is skipped: the bias-corrected average is still noisy there.
        ks = range(max(1, n // 10), n - 1)
        return float(lrs[min(ks, key=lambda k: (smoothed[k + 1] - smoothed[k - 1]) / (logs[k + 1] - logs[k - 1]))])
    if method != "valley":
        raise ValueError(f"unknown suggestion method '{method}': use one of {', '.join(METHODS)}")
    # Longest decreasing subsequence ending at each point (fastai's valley).
    lds = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[i] > lds[best_end]:
            best_end = i
    start = best_end - lds[best_end] + 1
    section = (best_end - start) / 3
    return float(lrs[start + int(section) + int(section / 2)])


def range_test(model, dataset, loss_fn, make_optimizer, *, min_lr: float = 1e-7, max_lr: float = 10.0,
               steps: int = 200, diverge: float = 4.0, beta: float = 0.98, method: str = "valley",
               stage: int = 1) -> LRFinderResult:
    """Runs the range test on `model` and restores its weights afterwards.

    Args:
        model: a Keras model whose trainable variables are trained.
        dataset: endless batches of (inputs, targets).
        loss_fn: a Keras loss.
        make_optimizer: `lr -> optimizer` (built fresh for the test).
        min_lr: first learning rate.
        max_lr: last learning rate (stops earlier when the loss diverges).
        steps: number of steps from `min_lr` to `max_lr`.
        diverge: stop when the smoothed loss exceeds this multiple of its
            minimum.
        beta: smoothing factor of the loss.
        method: how the suggestion is picked (see `suggest`).
        stage: recorded in the result.

    Returns:
        An `LRFinderResult`.
    """
    import numpy as np
    import tensorflow as tf

    if not 0 < min_lr < max_lr:
        raise ValueError(f"the range test needs 0 < min_lr < max_lr, got {min_lr}..{max_lr}")
    saved = [v.numpy() for v in model.weights]
    optimizer = make_optimizer(min_lr)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    factor = (max_lr / min_lr) ** (1 / max(1, steps - 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    try:
        for i, (x, y) in enumerate(dataset.take(steps)):
            lr = min_lr * factor ** i
            optimizer.learning_rate = lr
            loss = float(train_step(x, y))
            if not np.isfinite(loss):
                break
            lrs.append(lr)
            losses.append(loss)
            avg = beta * avg + (1 - beta) * loss
            smoothed = avg / (1 - beta ** (i + 1))
            best = min(best, smoothed)
            if i > 10 and smoothed > diverge * best:
                break
    finally:
        for v, value in zip(model.weights, saved):
            v.assign(value)
    if len(lrs) < 3:
        from tfl.errors import TflError

        raise TflError(f"the learning-rate range test diverged at once (loss {losses[-1:] or 'nan'}); "
                           f"lower --min-lr (was {min_lr:g})")
    smoothed = smooth(losses, beta)
    suggestions = {m: suggest(lrs, smoothed, m) for m in METHODS}
    return LRFinderResult(lrs, losses, smoothed, suggestions[method], method, suggestions, stage)


def plot_lr_find(result: LRFinderResult, path: str) -> None:
    """Loss against learning rate (log scale) with the suggestion marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss per batch")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss")
    i = min(range(len(result.lrs)), key=lambda k: abs(math.log(result.lrs[k] / result.suggestion)))
    ax.axvline(result.suggestion, color="C3", linestyle="--", linewidth=1)
    ax.plot([result.suggestion], [result.smoothed[i]], "o", color="C3", markersize=9,
            label=f"suggestion ({result.method}): {result.suggestion:.2e}")
    ax.set_xscale("log")
    top = max(result.smoothed[: max(1, len(result.smoothed) // 10)] + [min(result.smoothed)])
    low = min(result.smoothed)
    ax.set_ylim(low - 0.1 * (top - low + 1e-3), max(result.smoothed[0], top) + 0.5 * (top - low + 1e-3))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"Learning-rate range test, stage {result.stage}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def lr_find(config=None, *, stage: int = 1, out: typing.Optional[str] = None, min_lr: float = 1e-7,
            max_lr: float = 10.0, steps: typing.Optional[int] = None, method: str = "valley",
            verbose=0, **overrides) -> LRFinderResult:
    """Runs the learning-rate range test for one stage of a run's configuration.

    Args:
        config: a `TrainConfig` (`None`: the defaults).
        stage: 1 (the head, on cached features) or 2 (the unfrozen top of
            the backbone and the head, after training the head as stage 1
            is configured).
        out: PNG path of the plot (the numbers go beside it as `.json`).
        min_lr: first learning rate.
        max_lr: last learning rate.
        steps: steps of the test (default 200 for stage 1, 100 for stage 2).
        method: `valley`, `steepest` or `minimum`.
        verbose: Keras verbosity of the stage-1 training before a stage-2 test.
        **overrides: the shortcuts of `tfl.fine_tune` (`data`, `backbone`,
            `weights`, `image_size`, `unfreeze`, ...).

    Returns:
        An `LRFinderResult`; `result.suggestion` is the learning rate.

    Examples:
        >>> r = tfl.lr_find(data="folder:hymenoptera_data", backbone="mobilenet_025", out="lr.png")
        >>> r.suggestion
        0.0063...
    """
    from tfl import config as config_lib
    from tfl.config import TrainConfig
    from tfl.errors import UsageError
    from tfl.training.trainer import Trainer

    if stage not in (1, 2):
        raise UsageError(f"--stage {stage}: the range test is for stage 1 or 2")
    if method not in METHODS:
        raise UsageError(f"--method {method}: use one of {', '.join(METHODS)}")
    cfg = config_lib.apply_overrides(config or TrainConfig(), **overrides)
    if stage == 1:
        cfg.stage2.epochs = 0
    with tempfile.TemporaryDirectory(prefix="tfl-lr-find-") as tmp:
        trainer = Trainer(cfg, os.path.join(tmp, "run"), verbose=verbose)
        result = trainer.find_lr(stage, min_lr=min_lr, max_lr=max_lr, steps=steps, method=method)
    if out:
        result.save(out)
    return result


def describe(result: LRFinderResult) -> str:
    """One line per method, the chosen one marked."""
    lines = [f"stage {result.stage}: {len(result.lrs)} steps, lr {result.lrs[0]:.1e} .. {result.lrs[-1]:.1e}"]
    for m, v in result.suggestions.items():
        lines.append(f"  {m:<9} {v:.2e}{'   <- suggestion' if m == result.method else ''}")
    return "\n".join(lines)



def stage_range_test(trainer, stage: int, model, train_ds, min_lr: float = 1e-7, max_lr: float = 10.0,
                     steps: typing.Optional[int] = None, method: str = "valley") -> LRFinderResult:
    """The range test of a `Trainer`'s stage: its loss, optimizer and strategy, on its stage datasets."""
    import time

    from tfl.training import _optim

    stage_cfg = trainer.config.stage1 if stage == 1 else trainer.config.stage2
    fixed = dataclasses.replace(stage_cfg, lr=1.0, schedule="constant", warmup_epochs=0.0)
    steps = steps or (200 if stage == 1 else 100)
    t = time.time()
    with trainer.strategy.scope():
        result = range_test(model, train_ds, trainer._loss()[0], lambda lr: _optim.make_optimizer(fixed, 1, lr=lr),
                            min_lr=min_lr, max_lr=max_lr, steps=steps, method=method, stage=stage)
    print(f"[tfl] stage {stage}: LR finder suggests {result.suggestion:.2e} ({method}; {len(result.lrs)} steps "
          f"in {time.time() - t:.0f}s)", file=sys.stderr, flush=True)
    return result
