"""Data sources (`folder:`, `csv:`, tables and `tfds:`) and the tf.data input pipeline.

Every source ends as the same thing: a `Split` of raw images with their
labels (an integer class per image, or for multi-label data a multi-hot row
per image), which `Split.dataset(...)` turns into batches of float32 RGB images
(0-255) of the model's input size. Resizing lives in `resize_image`, the one
function that training, prediction and export all use, so a served model sees
exactly the pixels the trained model saw.
"""

from __future__ import annotations

import dataclasses
import os
import typing

from tfl.config import DataConfig
from tfl.data import images as _images
from tfl.data._table_source import from_table, table_options
from tfl.data._tfds_source import load_tfds
from tfl.data.splits import (  # noqa: F401 (tfl.data.loading's public names, as before)
    MEMORY_CACHE_BYTES,
    ImageData,
    Split,
    decode_image,
    hold_out,
    label_counts,
    label_matrix,
    resize_image,
    with_options,
)
from tfl.errors import UsageError


def load_data(config: typing.Union[DataConfig, str, typing.Any], seed: int = 42, *,
              multi_label: typing.Optional[bool] = None, root: typing.Optional[str] = None,
              **options) -> ImageData:
    """Loads a `folder:`, `csv:` or `tfds:` source, or a table of labels.

    Args:
        config: a `DataConfig`; its source string (`folder:PATH`,
            `csv:PATH`, `tfds:NAME[/CONFIG]`); or a table: a pandas
            DataFrame (columns as for a CSV) or a list of `(path, labels)` /
            `(path, labels, split)` tuples, `labels` being one name or a list.
        seed: seed of the train/validation hold-out when there is no
            validation split.
        multi_label: `True`: the labels become multi-hot rows (single-label
            sources too); `False`: refuse images with several labels (one
            line naming the row); `None`: multi-label exactly when some image
            has several labels.
        root: a table's relative paths are relative to this folder (default:
            the current folder).
        **options: `DataConfig` fields to set (`label_delimiter=" "`,
            `val_fraction=0.2`, `strict=True`, ...).

    Returns:
        An `ImageData`.

    Raises:
        UsageError: data that cannot be trained on, in one line.

    Examples:
        >>> data = load_data("folder:photos")  # photos/train/<class>/*.jpg
        >>> data.class_names
        ['ants', 'bees']
        >>> load_data("csv:photos/tags.csv", label_delimiter=" ").multi_label
        True
        >>> load_data([("a.jpg", ["ants", "landscape"]), ("b.jpg", "bees")], multi_label=True).class_names
        ['ants', 'bees', 'landscape']
    """
    from tfl.config import SOURCE_KINDS, normalize_source
    from tfl.data import tables

    table = None
    if not isinstance(config, (str, DataConfig)):
        table, config = config, DataConfig(source="table")
    elif isinstance(config, str):
        config = DataConfig(source=config)
    if options:
        try:
            config = dataclasses.replace(config, **options)
        except TypeError as e:
            raise UsageError(f"load_data: {e}") from None
    if table is not None:
        parsed = tables.read_table(table, root=root, expect_multi_label=multi_label, **table_options(config))
        with _images.decode_session():
            return with_holdout(from_table(parsed, config, seed, multi_label, "table"), config.holdout, seed)
    source = normalize_source(config.source)
    if source != config.source:
        config = dataclasses.replace(config, source=source)
    kind, _, rest = config.source.partition(":")
    if kind == "folder" and rest:
        with _images.decode_session():  # one TensorFlow decode helper for all splits, if one is needed
            data = _load_folder(rest, config, seed)
    elif kind == "csv" and rest:
        parsed = tables.read_csv(rest, expect_multi_label=multi_label, **table_options(config))
        with _images.decode_session():
            return with_holdout(from_table(parsed, config, seed, multi_label, config.source), config.holdout, seed)
    elif kind == "tfds" and rest:
        data = load_tfds(rest, config, multi_label)
    elif kind not in SOURCE_KINDS and ("/" in config.source or config.source.startswith((".", "~"))):
        raise UsageError(f"--data '{config.source}': no such folder; give an existing folder (folder:PATH), "
                         "a table of labels (csv:PATH) or a tfds dataset (tfds:NAME)")
    else:
        raise UsageError(f"--data '{config.source}' is not folder:PATH, csv:PATH or tfds:NAME[/CONFIG]")
    data = as_multi_label(data) if multi_label and not data.multi_label else data
    return with_holdout(data, config.holdout, seed)


def with_holdout(data: ImageData, fraction: float, seed: int) -> ImageData:
    """`data` with a test split of `fraction` of its training images (stratified, seeded), when it has none.

    The kept model is chosen on the validation split, so its validation score
    flatters it; the test split is scored once, at the end, by a model that
    nothing was chosen on. Data with its own test split keeps that one.
    """
    if not fraction:
        return data
    if data.test is not None:
        from tfl._logging import log

        log.info(f"--holdout {fraction:g}: the data has its own test split ({len(data.test)} images): "
                 "that one scores the kept model, nothing more is held out")
        return data
    if data.train.tfds_dataset is not None:
        raise UsageError(f"--holdout {fraction:g}: a tfds dataset cannot be held out from here; use a dataset with "
                         "a test split, or export the images to folder:PATH or csv:PATH")
    # Another seed than the validation hold-out's, so the two are not the same images of a class.
    train, test = hold_out(data.train, fraction, seed + 1, name="test")
    if len(train) < 2 or len(test) == 0:
        raise UsageError(f"--holdout {fraction:g}: the training split has too few images ({len(data.train)}) to "
                         "hold some out; use a smaller fraction or add images")
    layout = f"test: {fraction:.0%} of train held out (stratified, seed {seed + 1})"
    return dataclasses.replace(data, train=train, test=test,
                               layout="; ".join(x for x in (data.layout, layout) if x))


def as_multi_label(data: ImageData) -> ImageData:
    """`data` with multi-hot rows for labels (a single-label source trained with a multi-label head)."""
    def convert(split):
        if split is None:
            return None
        rows = [tuple(int(v) for v in row) for row in label_matrix(split.labels, data.num_classes)]
        if split.tfds_dataset is None:
            return Split(split.name, rows, list(split.paths))
        import tensorflow as tf

        n = data.num_classes
        return Split(split.name, rows, tfds_dataset=split.tfds_dataset.map(
            lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), n, dtype=tf.int32))))

    return dataclasses.replace(data, train=convert(data.train), val=convert(data.val), test=convert(data.test),
                               multi_label=True)


def _load_folder(root: str, config: DataConfig, seed: int) -> ImageData:
    if not os.path.isdir(root):
        raise UsageError(f"--data folder:{root}: no such folder")
    splits = {name: os.path.join(root, name) for name in ("train", "val", "validation", "test")
              if os.path.isdir(os.path.join(root, name))}
    train_dir = splits.get("train", root)
    warnings: list = []
    class_names = _class_names(train_dir, warnings)
    folders = _images.class_folders(train_dir)
    if not folders:
        raise UsageError(f"no class folders in {train_dir}: expected {train_dir}/<class>/<image files>")
    if len(folders) == 1:
        raise UsageError(f"only one class ({folders[0]}) in {train_dir}: a classifier needs at least two")
    if len(class_names) < 2:
        empty = ", ".join(sorted(set(folders) - set(class_names)))
        raise UsageError(f"only {len(class_names)} of the class folders in {train_dir} have files (empty: {empty}): "
                         "a classifier needs at least two")
    skipped: list = []
    files: dict = {}
    train = _folder_split("train", train_dir, class_names, config, skipped, files, warnings)
    for label, count in enumerate(_counts(train, len(class_names))):
        if not count:
            folder = os.path.join(train_dir, class_names[label])
            raise UsageError(f"class {class_names[label]} has no usable training images: every file in {folder} "
                             "was skipped (tfl check lists why)")
    val_dir = splits.get("val") or splits.get("validation")
    if config.val_split:
        val_dir = os.path.join(root, config.val_split)
        if not os.path.isdir(val_dir):
            raise UsageError(f"--val-split {config.val_split}: no folder {val_dir}")
    if val_dir:
        val = _folder_split("val", val_dir, class_names, config, skipped, files, warnings)
    else:
        train, val = hold_out(train, config.val_fraction, seed)
    test = (_folder_split("test", splits["test"], class_names, config, skipped, files, warnings)
            if "test" in splits else None)
    for split in (train, val):
        if len(split) == 0:
            raise UsageError(f"the {split.name} split of folder:{root} has no readable images")
    return ImageData(class_names, train, val, test, skipped, source=f"folder:{root}", files=files,
                     warnings=warnings)


def _class_names(train_dir: str, warnings: list) -> typing.List[str]:
    """Class folders of the training split; empty ones are left out with a warning."""
    names = []
    for cls in _images.class_folders(train_dir):
        if _images.list_files(os.path.join(train_dir, cls)):
            names.append(cls)
        else:
            warnings.append(f"{os.path.join(train_dir, cls)}: empty class folder, ignored")
    try:
        stray = [e.name for e in os.scandir(train_dir) if not e.name.startswith(".") and _images.is_file(e)]
    except OSError:
        stray = []  # an unreadable folder has no classes either: load_data says so
    if stray:
        warnings.append(f"{train_dir}: {len(stray)} file(s) outside class folders ignored "
                        f"({', '.join(sorted(stray)[:3])}{', ...' if len(stray) > 3 else ''})")
    return names


def _counts(split: Split, num_classes: int) -> typing.List[int]:
    return label_counts(split.labels, num_classes)


def _folder_split(name, folder, class_names, config, skipped, files=None, warnings=None) -> Split:
    extra = [c for c in sorted(set(_images.class_folders(folder)) - set(class_names))
             if _images.list_files(os.path.join(folder, c))]  # empty leftovers do no harm
    if extra:
        raise UsageError(f"{folder} has class folders not in train: {', '.join(extra)}")
    paths, labels = [], []
    for label, cls in enumerate(class_names):
        for path in _images.list_files(os.path.join(folder, cls), warnings):
            paths.append(path)
            labels.append(label)
    infos = _images.inspect_files(paths)
    if files is not None:
        files.update((i.path, i) for i in infos)
    problems = [(i.path, i.problem) for i in infos if i.problem]
    if problems and config.strict:
        path, reason = problems[0]
        raise UsageError(f"{path}: {reason} ({len(problems)} bad file(s); drop --strict to skip them)")
    bad = {p for p, _ in problems}
    skipped.extend(problems)
    keep = [i for i, p in enumerate(paths) if p not in bad]
    return Split(name, [labels[i] for i in keep], [paths[i] for i in keep])
