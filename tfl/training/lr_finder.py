"""The learning-rate range test ("LR finder").

The learning rate grows exponentially from `min_lr` to `max_lr` over a few
hundred optimizer steps while the training loss of every batch is recorded
(Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`). The loss first
stays flat, then falls, then blows up; a good rate lies in the falling part.
The suggestion is fastai's "valley" by default: the longest stretch of the
smoothed curve over which the loss keeps decreasing, taken a little past its
middle.

As in fastai, the test is a callback inside Keras' own `fit` (`LRFinder`):
the stage's model, optimizer, loss, inputs and `tf.distribute` strategy are
the ones training uses (mixed precision's loss scaling included). Each step
is a one-step epoch, so the loss Keras reports is that batch's loss. The
weights are restored afterwards, so the test leaves the model as it found it.

`tfl.training.api.lr_find` runs it for one stage of a configuration:
stage 1 trains the head on cached backbone features, so its test costs
seconds; stage 2 first trains the head, then tests the unfrozen top.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing

from tfl._progress import Progress
from tfl.errors import TflError
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


def make_callback(min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 200, diverge: float = 4.0,
                  beta: float = 0.98):
    """The range test as a Keras callback for `fit(..., epochs=steps, steps_per_epoch=1)`.

    At the start of epoch `i` it sets the optimizer's learning rate to
    `min_lr * (max_lr / min_lr) ** (i / (steps - 1))`; at its end it records
    the batch's loss and stops training once the smoothed loss exceeds
    `diverge` times its minimum (or is not finite). The weights of the
    model are restored when training ends. Its `lrs` and `losses` are the
    curve.
    """
    import keras
    import numpy as np

    factor = (max_lr / min_lr) ** (1 / max(1, steps - 1))

    class LRFinder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.lrs, self.losses = [], []
            self._avg, self._best, self._lr, self._saved = 0.0, math.inf, min_lr, None
            self._progress = None

        def on_train_begin(self, logs=None):
            self._saved = [v.numpy() for v in self.model.weights]
            self._progress = Progress("LR range test", steps, "steps")

        def on_epoch_begin(self, epoch, logs=None):
            optimizer = self.model.optimizer
            optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # mixed precision's LossScaleOptimizer
            self._lr = min_lr * factor ** epoch
            optimizer.learning_rate = self._lr

        def on_epoch_end(self, epoch, logs=None):
            self._progress.update(1)
            loss = float((logs or {}).get("loss", float("nan")))
            if not np.isfinite(loss):
                self.model.stop_training = True
                return
            self.lrs.append(self._lr)
            self.losses.append(loss)
            self._avg = beta * self._avg + (1 - beta) * loss
            smoothed = self._avg / (1 - beta ** len(self.losses))
            self._best = min(self._best, smoothed)
            if epoch > 10 and smoothed > diverge * self._best:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            self._progress.close()
            for v, value in zip(self.model.weights, self._saved):
                v.assign(value)

    return LRFinder()


def range_test(model, dataset, *, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 200,
               diverge: float = 4.0, beta: float = 0.98, method: str = "valley", stage: int = 1) -> LRFinderResult:
    """Runs the range test on a compiled `model` with Keras' `fit`; its weights are restored afterwards.

    Args:
        model: a Keras model compiled with the optimizer and loss to test
            (the optimizer's learning rate is driven by the test).
        dataset: endless batches of (inputs, targets).
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
    if not 0 < min_lr < max_lr:
        raise ValueError(f"the range test needs 0 < min_lr < max_lr, got {min_lr}..{max_lr}")
    finder = make_callback(min_lr, max_lr, steps, diverge, beta)
    model.fit(dataset, epochs=steps, steps_per_epoch=1, callbacks=[finder], shuffle=False, verbose=0)
    lrs, losses = finder.lrs, finder.losses
    if len(lrs) < 3:
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


def describe(result: LRFinderResult) -> str:
    """One line per method, the chosen one marked."""
    lines = [f"stage {result.stage}: {len(result.lrs)} steps, lr {result.lrs[0]:.1e} .. {result.lrs[-1]:.1e}"]
    for m, v in result.suggestions.items():
        lines.append(f"  {m:<9} {v:.2e}{'   <- suggestion' if m == result.method else ''}")
    return "\n".join(lines)
