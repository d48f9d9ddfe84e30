"""The stage plan: how each stage trains, decided once before training starts.

`make_plan` reads the configuration, the model's backbone (its layers and
block ids) and the memory budget, and returns one `StagePlan` per stage:
what the stage feeds its model (cached pooled features, cached activations
at a cut of the backbone, or images), how many cached copies, which backbone
layers it trains, and its learning rate (fixed, found by the LR finder, or a
range over layer groups). The `Trainer` then only carries the plans out, so
every decision about a stage is in this module and can be read (and tested)
in one place.

The rules:

* Stage 1 always trains the head on cached pooled features
  (`min(augment_copies, epochs)` copies, fewer on large training sets:
  `AUGMENTED_IMAGES`; one without augmentation).
* Stage 2 trains the top of the backbone. When every trained layer gets the
  same learning rate (no LOW..HIGH range, no gradual unfreezing), nothing
  below the first unfrozen layer ever changes, so it trains on cached
  activations at that cut (`inputs="activations"`) if they fit the memory
  budget; otherwise, and for layer groups (which need the whole backbone), it
  trains the classifier on images. When stage 1's pass can keep the cut's
  activations beside the features within the budget it does (one pass for
  both), and stage 2 uses those copies (else it computes its own).
* A resumed stage 2 that already trained on images goes on on images.
* Without pretrained weights (`weights=None`) a frozen backbone computes
  constant features (random weights, BatchNorm in inference mode), so nothing
  could learn on them: the whole classifier trains from scratch in one stage
  on images (stage 1's epochs and learning rate, BatchNorm in training mode),
  and stage 2 is skipped.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from tfl import _memory
from tfl.config import LearningRate, TrainConfig
from tfl.errors import UsageError

INPUTS = ("features", "activations", "images")


@dataclasses.dataclass
class StagePlan:
    """How one stage trains.

    Args:
        stage: 1 (the head) or 2 (the top of the backbone and the head).
        epochs: the stage's epochs (0: skipped).
        inputs: `features` (pooled backbone outputs), `activations` (at
            `split`'s cut) or `images`.
        copies: cached copies of the training images to compute (epoch `e`
            uses copy `e % copies`); 1 for images.
        kept_copies: stage 2: the copies of stage 1's pass, whose activations
            at the cut it kept (used instead when still kept).
        lr: the parsed learning-rate setting.
        unfrozen: indices of the backbone layers the stage trains (stage 2).
        gradual: release the unfrozen blocks one by one (stage 2).
        split: the `BottomSplit` when `inputs == "activations"` (stage 2), or
            the cut whose activations stage 1's pass keeps (stage 1).
        reason: why these inputs, in a few words (logged and kept in state.json).
    """

    stage: int
    epochs: int
    inputs: str
    copies: int
    lr: LearningRate
    unfrozen: typing.List[int] = dataclasses.field(default_factory=list)
    gradual: bool = False
    split: typing.Any = None
    reason: str = ""
    kept_copies: typing.Optional[int] = None

    def describe(self) -> dict:
        """The plan as JSON-ready values (kept in the run's state.json)."""
        return {"epochs": self.epochs, "inputs": self.inputs, "copies": self.copies, "lr": dataclasses.asdict(self.lr),
                "unfrozen_layers": len(self.unfrozen), "gradual": self.gradual, "reason": self.reason}

    @property
    def uses_layer_groups(self) -> bool:
        """Per-block learning rates (a LOW..HIGH range or gradual unfreezing): stage 2 on images only."""
        return self.stage == 2 and (self.lr.kind == "range" or self.gradual)


# Augmented copies are worth most on small training sets (the head sees more variety than the images
# hold) and cost a backbone pass each: enough copies for about this many images in all, 2 at least.
# On the shared sets: hymenoptera (244) and trashnet (360) keep 8, rsscn7 (896) 6, intel_scenes (1,440) 4.
AUGMENTED_IMAGES = 5000


def cached_copies(cfg: TrainConfig, epochs: int, num_train: typing.Optional[int] = None) -> int:
    """Copies worth caching for a stage of `epochs` epochs (more than one only with augmentation).

    At most `cfg.augment_copies` and `epochs`; with `num_train`, no more than
    it takes to reach `AUGMENTED_IMAGES` images (2 at least).
    """
    if not cfg.model.augment:
        return 1
    copies = min(cfg.augment_copies, max(1, epochs))
    if num_train:
        copies = min(copies, max(2, math.ceil(AUGMENTED_IMAGES / num_train)))
    return copies


def _copies_why(cfg: TrainConfig, copies: int, num_train: int) -> str:
    if copies > 1 and copies < min(cfg.augment_copies, max(1, cfg.stage1.epochs)):
        return f": about {AUGMENTED_IMAGES:,} augmented images from {num_train:,}; more add little on this many"
    return ""


def unfrozen_layers(cfg: TrainConfig, num_layers: int, block_ids: typing.Sequence[int]) -> typing.List[int]:
    """The backbone layers stage 2 trains; a count beyond the backbone is a `UsageError`."""
    try:
        return cfg.stage2.unfreeze_spec.layer_indices(num_layers, block_ids)
    except ValueError as e:
        raise UsageError(str(e)) from None


def stage2_split(model, cfg: TrainConfig, block_ids: typing.Sequence[int]):
    """The `BottomSplit` stage 2 can train on, or None when it must train on images.

    None when stage 2 is skipped, uses layer groups (a LOW..HIGH range or
    gradual unfreezing), unfreezes nothing, or unfreezes down to the input.
    """
    from tfl.models import classifier as model_lib
    from tfl.training.cut import BottomSplit

    stage = cfg.stage2
    if not stage.epochs or stage.gradual or stage.learning_rate.kind == "range":
        return None
    unfrozen = unfrozen_layers(cfg, len(model_lib.backbone_of(model).layers), block_ids)
    if not unfrozen or min(unfrozen) <= 1:  # nothing below the cut but the input
        return None
    return BottomSplit(model, unfrozen)


def make_plan(cfg: TrainConfig, model, block_ids: typing.Sequence[int], *, num_train: int, num_val: int,
              feature_dim: int, memory_budget: int, stage1_done: bool = False,
              stage2_inputs: typing.Optional[str] = None,
              disk_free: typing.Optional[int] = None) -> typing.Tuple[StagePlan, StagePlan]:
    """The plans of both stages.

    Args:
        cfg: the run's configuration (validated).
        model: the tfl classifier (its backbone is cut for stage 2).
        block_ids: block index of each backbone layer.
        num_train, num_val: images in the splits.
        feature_dim: size of the pooled features.
        memory_budget: bytes of cached outputs that may be kept in memory.
        stage1_done: stage 1 finished in an earlier (resumed) run: it
            computes nothing now.
        stage2_inputs: what a resumed stage 2 already trained on
            (`activations` or `images`), from its state.
        disk_free: free bytes where activations beyond the memory budget
            would be written (None: no disk cache; they train on images).

    Returns:
        `(stage 1 plan, stage 2 plan)`.
    """
    from tfl.models import classifier as model_lib

    if cfg.model.weights is None:
        why = "no pretrained weights: every layer trains from scratch (BatchNorm in training mode), in one stage"
        return (StagePlan(1, cfg.stage1.epochs, "images", 1, cfg.stage1.learning_rate, reason=why),
                StagePlan(2, 0, "images", 1, cfg.stage2.learning_rate, reason=why))
    copies1 = cached_copies(cfg, cfg.stage1.epochs, num_train)
    in_memory = _memory.IN_MEMORY_COPIES  # what an array kept for training costs, in multiples of its size
    num_layers = len(model_lib.backbone_of(model).layers)
    unfrozen = unfrozen_layers(cfg, num_layers, block_ids) if cfg.stage2.epochs else []
    split = stage2_split(model, cfg, block_ids)
    per_image = split.nbytes_per_image if split is not None else 0
    feature_bytes = (copies1 * num_train + num_val) * feature_dim * 4
    cut_bytes = (copies1 * num_train + num_val) * per_image
    # Stage 1's pass also keeps the cut's activations for stage 2: in memory when they fit beside the
    # features, else (features in memory) on the disk; either way no second pass over the images.
    keep_cut = (split is not None and bool(cfg.stage1.epochs) and not stage1_done
                and ((feature_bytes + cut_bytes) * in_memory <= memory_budget
                     or (feature_bytes * in_memory <= memory_budget and disk_free is not None
                         and cut_bytes * 1.25 < disk_free)))
    plan1 = StagePlan(1, cfg.stage1.epochs, "features", copies1, cfg.stage1.learning_rate,
                      split=split if keep_cut else None,
                      reason=f"the head trains on cached pooled features ({copies1} cop{'y' if copies1 == 1 else 'ies'}"
                             f"{_copies_why(cfg, copies1, num_train)})")

    copies2 = cached_copies(cfg, cfg.stage2.epochs, num_train)
    stage2 = cfg.stage2
    if split is None:
        why = ("layer groups need the whole backbone" if stage2.gradual or stage2.learning_rate.kind == "range"
               else "nothing below the first unfrozen layer to cache")
        inputs, reason = "images", why
    elif stage2_inputs == "images":
        inputs, reason = "images", "the resumed stage already trained on images"
    elif not keep_cut and (copies2 * num_train + num_val) * per_image * in_memory > memory_budget:
        need = (copies2 * num_train + num_val) * per_image
        if disk_free is not None and need * 1.25 < disk_free:
            inputs, reason = "activations", (
                f"nothing below the cut trains; its activations ({need / 1024**2:,.0f} MB) exceed the memory "
                "budget, so they are written to the run folder and streamed from there")
        else:
            inputs, reason = "images", "the activations at the cut fit neither the memory budget nor the free disk"
    elif keep_cut and (feature_bytes + cut_bytes) * in_memory > memory_budget:
        inputs, reason = "activations", ("nothing below the cut trains, so its activations are cached; stage 1's "
                                         "pass writes them to the run folder (they exceed the memory budget)")
    else:
        inputs, reason = "activations", "nothing below the cut trains, so its activations are cached"
    on_cut = inputs == "activations"
    plan2 = StagePlan(2, stage2.epochs, inputs, copies2 if on_cut else 1, stage2.learning_rate,
                      unfrozen=unfrozen, gradual=stage2.gradual, split=split if on_cut else None,
                      reason=reason, kept_copies=copies1 if on_cut and keep_cut else None)
    return plan1, plan2
