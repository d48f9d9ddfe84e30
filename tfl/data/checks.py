"""Checks up front: the data (`tfl check`) and the options (`tfl train`), before any heavy work.

`check_data` loads a source exactly as training does (the same file checks,
the same skipping rules) and reports what it found: classes and counts per
split, files that cannot be used (with paths and why), images too small for
the backbone, duplicates across splits, class imbalance with the class weights
tfl would use. Refusals (a single class, an empty split, no class folders)
raise `UsageError` with one line. `Trainer` logs the same report's lines
before training, so `tfl train` and `tfl check` never disagree.

`check_options` validates a `TrainConfig` and the run folder without
TensorFlow, so a bad option fails in well under a second; only an absolute
`--unfreeze` count (`--unfreeze 120`) needs the backbone, built without
weights and without reading any data.
"""

from __future__ import annotations

import dataclasses
import os
import typing

from tfl.config import DataConfig, TrainConfig
from tfl.errors import UsageError

# Largest/smallest training class at or above this ratio is reported as imbalanced.
IMBALANCE_RATIO = 3.0
# An image is too small when its shorter side is below the backbone's minimum input size
# or a quarter of the model's input size (upscaled more than 4x it is mostly blur).
UPSCALE_LIMIT = 4
_STAGE_OPTIONS = {"stage1": "--lr", "stage2": "--fine-tune-lr"}


def balanced_class_weights(counts: typing.Sequence[int]) -> typing.Dict[int, float]:
    """Keras `class_weight` for `--class-weight balanced`: total / (classes * count)."""
    total = sum(counts)
    return {i: total / (len(counts) * c) for i, c in enumerate(counts) if c}


def balanced_label_weights(counts: typing.Sequence[int], num_images: int) -> typing.List[typing.Tuple[float, float]]:
    """Multi-label `--class-weight balanced`: per label, the weights of (present, absent).

    Each label is its own two-class problem, weighted as `balanced_class_weights`
    weights two classes: images / (2 * images with the label) when present,
    images / (2 * images without it) when absent. A label every image has (or
    none has) gets 1 for both.

    Examples:
        >>> balanced_label_weights([20, 50], 100)
        [(2.5, 0.625), (1.0, 1.0)]
    """
    out = []
    for c in counts:
        if 0 < c < num_images:
            out.append((num_images / (2 * c), num_images / (2 * (num_images - c))))
        else:
            out.append((1.0, 1.0))
    return out


@dataclasses.dataclass
class DataReport:
    """What `check_data` found.

    Args:
        source: the data source.
        class_names: label names in label order.
        counts: images per class for each split (`{"train": [...], "val": [...]}`).
        skipped: (path, reason) of files that cannot be used (left out of training).
        too_small: (path, width, height) of images below `min_side` pixels.
        min_side: shorter side below which an image is reported as too small.
        duplicates: (path, path) pairs with identical bytes in different splits.
        conflicts: (path, path) pairs with identical bytes under different classes.
        class_weights: class name -> weight that `--class-weight balanced` uses.
        class_weight: the run's class-weight setting (`None` or `balanced`).
        warnings: other problems found while loading (empty class folders, ...).
        layout: where the splits came from (folders found, or a held-out fraction).
        multi_label: images may have several labels: `counts` are images
            with each label, and `class_weights` the weight of an image that
            has the label (one that lacks it weighs less, see
            `balanced_label_weights`).
        images: images per split.

    Examples:
        >>> report = check_data("folder:photos", backbone="mobilenet_025")
        >>> print("\\n".join(report.lines()))
    """

    source: str
    class_names: typing.List[str]
    counts: typing.Dict[str, typing.List[int]]
    skipped: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)
    too_small: typing.List[typing.Tuple[str, int, int]] = dataclasses.field(default_factory=list)
    min_side: int = 0
    duplicates: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)
    conflicts: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)
    class_weights: typing.Dict[str, float] = dataclasses.field(default_factory=dict)
    class_weight: typing.Optional[str] = None
    warnings: typing.List[str] = dataclasses.field(default_factory=list)
    layout: str = ""
    multi_label: bool = False
    images: typing.Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def imbalance(self) -> float:
        """Largest over smallest number of training images per class."""
        train = [c for c in self.counts.get("train", []) if c]
        return max(train) / min(train) if train else 1.0

    @property
    def ok(self) -> bool:
        """True when nothing at all was found to report."""
        return not self.problems()

    def problems(self) -> typing.List[str]:
        """One line per problem, each naming the file or folder and what to do."""
        out = [f"skipped {path}: {reason}" for path, reason in self.skipped]
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"warning: {p}: {w}x{h} is smaller than {self.min_side} px and will be upscaled "
                "(blurry): replace it with a larger image or drop it" for p, w, h in self.too_small]
        out += [f"warning: {b} is a copy of {a}: the same image in train and validation inflates "
                "validation accuracy; delete one" for a, b in self.duplicates]
        out += [f"warning: {a} and {b} are the same image under two classes: fix the label"
                for a, b in self.conflicts]
        if self.imbalance >= IMBALANCE_RATIO:
            out.append(f"warning: {self._imbalance_text()}")
        return out

    def _imbalance_text(self) -> str:
        counts = self.counts["train"]
        big, small = counts.index(max(counts)), counts.index(min(c for c in counts if c))
        kind = "label" if self.multi_label else "class"
        text = (f"{kind} imbalance: {self.class_names[big]} has {counts[big]} training images, "
                f"{self.class_names[small]} {counts[small]} ({self.imbalance:.1f}x); ")
        if self.class_weight == "balanced":
            return text + f"training uses the {kind} weights below (--class-weight balanced)"
        return text + f"consider --class-weight balanced ({kind} weights below)"

    def summary(self) -> typing.List[str]:
        """Lines describing the data: splits, classes with their counts, class weights."""
        if self.multi_label:
            splits = ", ".join(f"{name} {n}" for name, n in self.images.items())
            lines = [f"{self.source}: {len(self.class_names)} labels (multi-label: images with each label); "
                     f"images per split: {splits}"]
        else:
            splits = ", ".join(f"{name} {sum(c)}" for name, c in self.counts.items())
            lines = [f"{self.source}: {len(self.class_names)} classes; images per split: {splits}"]
        if self.layout:
            lines.append(f"splits: {self.layout}")
        for i, name in enumerate(self.class_names):
            per_split = ", ".join(f"{split} {c[i]}" for split, c in self.counts.items())
            lines.append(f"  {name}: {per_split}")
        weights = ", ".join(f"{n} {w:.2f}" for n, w in self.class_weights.items())
        used = "used" if self.class_weight == "balanced" else "with --class-weight balanced"
        if self.multi_label:
            lines.append(f"label weights of an image with the label ({used}): {weights}")
        else:
            lines.append(f"class weights ({used}): {weights}")
        return lines

    def lines(self) -> typing.List[str]:
        """The whole report as `tfl check` prints it."""
        problems = self.problems()
        tail = (f"{len(problems)} problem(s): {len(self.skipped)} file(s) skipped, "
                f"{len(problems) - len(self.skipped)} warning(s)" if problems else "no problems found")
        return self.summary() + problems + [tail]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "imbalance": self.imbalance, "problems": self.problems()}


def check_data(source: typing.Union[str, DataConfig], *, backbone: typing.Optional[str] = None,
               image_size: typing.Optional[int] = None, class_weight: typing.Optional[str] = None,
               seed: int = 42, multi_label: typing.Optional[bool] = None, **data_options) -> DataReport:
    """Loads a data source as training would and reports its problems.

    Args:
        source: `folder:PATH`, `csv:PATH`, `tfds:NAME[/CONFIG]` or a `DataConfig`.
        backbone: backbone whose input size decides which images are too small.
        image_size: the model's input size (default: the backbone's).
        class_weight: the class-weight setting training would use.
        seed: seed of the validation hold-out (when there is no val split).
        multi_label: as `tfl.load_data` takes it (`None`: multi-label when
            some image has several labels; `False`: refuse such images).
        **data_options: other `DataConfig` fields (`strict`, `val_split`,
            `data_dir`, `download`, ...). tfds downloads are off unless asked.

    Returns:
        A `DataReport`.

    Raises:
        UsageError: when the data cannot be trained on at all (one class,
            an empty split, no class folders; any bad file with `strict`).

    Examples:
        >>> report = tfl.check_data("folder:photos")
        >>> report.counts["train"], report.skipped[:1]
        ([120, 80], [('photos/train/cats/x.jpg', 'empty file (0 bytes)')])
    """
    from tfl.data.loading import load_data

    if isinstance(source, DataConfig):
        config = dataclasses.replace(source, **data_options)
    else:
        config = DataConfig(source=source, **{"download": False, **data_options})
    data = load_data(config, seed=seed, multi_label=multi_label)
    report = inspect_data(data, backbone=backbone, image_size=image_size, class_weight=class_weight)
    report.layout = _layout(config, data)
    return report


def _layout(config: DataConfig, data=None) -> str:
    kind, _, root = config.source.partition(":")
    if getattr(data, "layout", ""):
        return data.layout
    if kind != "folder":
        return f"tfds splits {config.train_split} / {config.val_split or 'validation (or val, test)'}"
    found = [n for n in ("train", "val", "validation", "test") if os.path.isdir(os.path.join(root, n))]
    text = ", ".join(f"{n}/" for n in found) if found else f"class folders directly in {root}"
    if config.val_split:
        return f"{text}; validation from {config.val_split}/"
    if "val" not in found and "validation" not in found:
        text += f"; no val/ folder: {config.val_fraction:.0%} of train held out for validation"
    return text


def inspect_data(data, backbone: typing.Optional[str] = None, image_size: typing.Optional[int] = None,
                 class_weight: typing.Optional[str] = None) -> DataReport:
    """The `DataReport` of already loaded `ImageData` (no file is read again)."""
    from tfl.models import backbones

    min_side = 0
    if backbone:
        spec = backbones.get_backbone(backbone)
        min_side = max(spec.min_size, (image_size or spec.default_size) // UPSCALE_LIMIT)
    from tfl.data.loading import label_counts

    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    counts = {split.name: label_counts(split.labels, data.num_classes) for split in splits}
    multi = bool(getattr(data, "multi_label", False))
    if multi:
        present = balanced_label_weights(counts[data.train.name], len(data.train))
        weights = {i: w for i, (w, _) in enumerate(present)}
    else:
        weights = balanced_class_weights(counts[data.train.name])
    report = DataReport(data.source, list(data.class_names), counts, skipped=list(data.skipped),
                        min_side=min_side, class_weight=class_weight,
                        class_weights={data.class_names[i]: round(w, 4) for i, w in weights.items()},
                        warnings=list(getattr(data, "warnings", [])), multi_label=multi,
                        images={split.name: len(split) for split in splits})
    files = getattr(data, "files", {})
    if files:
        _file_checks(report, splits, files)
    return report


def _file_checks(report: DataReport, splits, files: dict) -> None:
    seen: typing.Dict[str, typing.Tuple[str, int, str]] = {}
    for split in splits:
        for path, label in zip(split.paths or [], split.labels):
            info = files.get(path)
            if info is None:
                continue
            if report.min_side and min(info.width, info.height) < report.min_side:
                report.too_small.append((path, info.width, info.height))
            first = seen.setdefault(info.digest, (split.name, label, path))
            if first[2] == path:
                continue
            if first[1] != label:
                report.conflicts.append((first[2], path))
            elif first[0] != split.name:
                report.duplicates.append((first[2], path))


# -- options -------------------------------------------------------------------------------

def check_options(cfg: TrainConfig, *, out: typing.Optional[str] = None, resume: bool = False,
                  overwrite: bool = False, deep: bool = True) -> None:
    """Refuses settings that cannot work, each with one line, before any heavy work.

    Args:
        cfg: the run's configuration.
        out: the run folder to be written (checked for writability and for
            an earlier run that would be clobbered).
        resume: the run folder is being resumed.
        overwrite: the run folder may be replaced.
        deep: also check `--unfreeze N` against the backbone's real number of
            layers or blocks (imports TensorFlow and builds the backbone
            without weights, about a second for small backbones).

    Raises:
        UsageError: naming the option and what to do.

    Examples:
        >>> check_options(cfg, out="runs/ants")  # silent when everything is usable
    """
    from tfl import config as config_lib
    from tfl.models import backbones

    if out:
        from tfl.runs import RunFolder

        RunFolder(out).preflight(resume=resume, overwrite=overwrite)
    if resume:
        return  # the run's own config.json was checked when it started
    from tfl.selection import auto

    spec = None
    if auto.is_auto(cfg.model.backbone):
        auto.check(cfg)  # each candidate's size is checked by the pick (a candidate it cannot take is skipped)
    else:
        try:
            spec = backbones.get_backbone(cfg.model.backbone)
        except ValueError as e:
            raise UsageError(f"--backbone: {e}") from None
    size = cfg.model.image_size
    if spec is not None and size is not None and size < spec.min_size:
        raise UsageError(f"--image-size {size} is below {spec.name}'s minimum of {spec.min_size}; "
                         f"use --image-size {spec.min_size} or more")
    for name in ("stage1", "stage2"):
        _check_lr(getattr(cfg, name).lr, _STAGE_OPTIONS[name])
    if cfg.strategy == "multiworker":
        from tfl.training.strategy import check_tf_config

        check_tf_config()
    if cfg.data.source.startswith("folder:") and not os.path.isdir(cfg.data.source[len("folder:"):]):
        raise UsageError(f"--data {cfg.data.source}: no such folder")
    if cfg.data.source.startswith("csv:") and not os.path.isfile(cfg.data.source[len("csv:"):]):
        raise UsageError(f"--data {cfg.data.source}: no such file")
    try:
        config_lib.validate(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if deep and cfg.stage2.epochs and spec is not None:
        _check_unfreeze(spec, cfg.stage2.unfreeze)


def _check_lr(value, option: str) -> None:
    """A learning rate is a positive number, `auto`, or a range LOW..HIGH (low first)."""
    from tfl.config import parse_lr

    try:
        parse_lr(value, option)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_unfreeze(spec, unfreeze) -> None:
    from tfl.config import Unfreeze

    try:
        parsed = Unfreeze.parse(unfreeze)
    except ValueError as e:
        raise UsageError(str(e)) from None
    # Only absolute counts can exceed the backbone; fractions and 'all' always fit, and every
    # registered backbone has more than 4 blocks (VGG, the fewest, has 6 with its input).
    if not (parsed.kind == "layers" or (parsed.kind == "blocks" and parsed.count > 4)):
        return
    from tfl.models import backbones
    from tfl.models import classifier as model_lib

    backbone = backbones.build_backbone(spec, max(spec.min_size, 32), weights=None)
    try:
        model_lib.parse_unfreeze(unfreeze, backbone, backbones.block_ids(spec, backbone))
    finally:
        import keras

        keras.backend.clear_session()
