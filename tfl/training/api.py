"""The two entry points of training, built from public pieces: `fine_tune` and `lr_find`."""

from __future__ import annotations

import os
import tempfile
import typing

from tfl import config as config_lib
from tfl.config import TrainConfig
from tfl.errors import UsageError
from tfl.training.trainer import FineTuneResult, Trainer

if typing.TYPE_CHECKING:  # pragma: no cover - typing only
    from tfl.training.lr_finder import LRFinderResult


def fine_tune(config: typing.Optional[TrainConfig] = None, out: str = "runs/latest", *, resume: bool = False,
              overwrite: bool = False, verbose="auto", **overrides) -> FineTuneResult:
    """Trains a classifier in two stages: the head, then the top of the backbone.

    Args:
        config: a full `TrainConfig`; `None` starts from the defaults.
        out: the run folder to write.
        resume: continue the run in `out` from its last checkpoint.
        overwrite: replace an existing run folder.
        verbose: Keras verbosity.
        **overrides: shortcuts for common fields: `data` (source string),
            `backbone`, `weights`, `image_size`, `epochs`, `fine_tune_epochs`,
            `lr`, `fine_tune_lr`, `unfreeze`, `batch_size`, `seed`.

    Returns:
        A `FineTuneResult`.

    Examples:
        >>> result = tfl.fine_tune(data="folder:hymenoptera_data", backbone="mobilenet_025", out="runs/ants")
        >>> result.val_accuracy
        0.9...
    """
    cfg = config_lib.apply_overrides(config or TrainConfig(), **overrides)
    return Trainer(cfg, out, resume=resume, overwrite=overwrite, verbose=verbose).fit()


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
    from tfl.training.lr_finder import METHODS

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
