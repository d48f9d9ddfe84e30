"""What a finished stage scored, and how it reads: small pure helpers of the trainer."""

from __future__ import annotations

import dataclasses
import typing

from tfl.config import is_minimized


def near_chance(accuracy: float, class_counts: typing.Sequence[int], margin: float = 0.05):
    """The majority-class rate when `accuracy` is within `margin` of it (or below), else None.

    Always answering the most common class scores that rate, so a model below
    it plus a margin has learned next to nothing.

    Examples:
        >>> near_chance(0.26, [24, 24, 24, 24])
        0.25
        >>> near_chance(0.9, [24, 24, 24, 24]) is None
        True
    """
    total = sum(class_counts)
    if not total:
        return None
    majority = max(class_counts) / total
    return majority if accuracy < majority + margin else None


def class_counts(labels, num_classes: int) -> typing.List[int]:
    counts = [0] * num_classes
    for y in labels:
        counts[int(y)] += 1
    return counts


def stage_metrics(state, monitor) -> dict:
    if state is None or not state.data.get("best_epoch"):
        return {}
    epoch = state.data["best_epoch"]
    out = {k: v[epoch - 1] for k, v in state.history.items() if k.startswith("val_") and len(v) >= epoch}
    return {**out, "best_epoch": epoch, "epochs": state.epochs_done}


def worse(a, b, monitor) -> bool:
    if a is None or b is None:
        return False
    return a > b if is_minimized(monitor) else a < b


def describe(m: dict) -> str:
    if not m:
        return "skipped"
    return f"val_accuracy {m.get('val_accuracy', float('nan')):.4f} (epoch {m['best_epoch']})"


@dataclasses.dataclass
class FineTuneResult:
    """What `fine_tune` returns.

    Args:
        run_dir: the run folder.
        class_names: label names in output order.
        stage1: validation metrics at the end of stage 1 (best epoch).
        stage2: validation metrics at the end of stage 2 (best epoch).
        best_stage: the stage whose weights were kept (1 or 2).
        model: the trained Keras model.
        validation: multi-label runs: the kept model's validation scores at
            the per-label thresholds chosen on it (`macro_f1`, `micro_f1`,
            `map`, `accuracy` (exact match), `thresholds`); empty otherwise.
        test: the kept model's scores on the test split (a test folder, test
            rows of a table, or `--holdout`), which nothing was chosen on:
            `accuracy` (multi-label: also `macro_f1`, `micro_f1`, `map`),
            `num_images`, `split` (where it came from); empty without one.
    """

    run_dir: str
    class_names: typing.List[str]
    stage1: dict
    stage2: dict
    best_stage: int
    model: typing.Any = None
    validation: dict = dataclasses.field(default_factory=dict)
    test: dict = dataclasses.field(default_factory=dict)

    @property
    def val_accuracy(self) -> float:
        return (self.stage2 if self.best_stage == 2 else self.stage1).get("val_accuracy", float("nan"))
