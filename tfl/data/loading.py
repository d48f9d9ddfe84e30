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

import numpy as np

from tfl.config import DataConfig
from tfl.data import images as _images
from tfl.errors import TflError, UsageError

# Decoded float32 images are cached in memory up to this many bytes.
MEMORY_CACHE_BYTES = 3 * 1024**3


def resize_image(image, image_size: int):
    """uint8 or float image [H, W, C] -> float32 [S, S, 3] RGB 0..255 (bilinear, as Keras)."""
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif image.shape.rank == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")
    return tf.clip_by_value(image, 0.0, 255.0)


def decode_image(contents):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 RGB [H, W, 3] (first GIF frame), turned upright
    as the JPEG's EXIF orientation says (`tfl.data.orientation`), as viewers show it."""
    import tensorflow as tf

    from tfl.data import orientation

    image = tf.io.decode_image(contents, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    image = orientation.apply_orientation(image, orientation.exif_orientation(contents))
    image.set_shape([None, None, 3])
    return image


@dataclasses.dataclass
class Split:
    """One split of a dataset: either image files with labels or a tfds split.

    Args:
        name: split name (`train`, `val`, `test` or a tfds split spec).
        paths: image file paths (folder and table sources).
        labels: per image, its integer class, or for multi-label data a
            multi-hot tuple (1 for each of its classes, 0 elsewhere).
        tfds_dataset: a `tf.data.Dataset` of (uint8 image, label) (tfds sources).
    """

    name: str
    labels: typing.List[typing.Any]
    paths: typing.Optional[typing.List[str]] = None
    tfds_dataset: typing.Any = None
    # (image_size, decoded-resized-cached dataset) shared by every pipeline over this split.
    _resized: typing.Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """A digest of the images this split holds, in order, cheap to compute.

        Folder splits: each file's path, size and modification time, and its
        label. tfds splits: the split name, the labels and the pixels of the
        first images. Caches of derived data (backbone features) are keyed by it.
        """
        import hashlib

        import numpy as np

        h = hashlib.sha256(self.name.encode())
        h.update(np.asarray(self.labels, np.int64).tobytes())
        if self.paths is not None:
            for path in self.paths:
                st = os.stat(path)
                h.update(os.fsencode(os.path.abspath(path)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        elif self.tfds_dataset is not None:
            for image, label in self.tfds_dataset.take(4):
                h.update(np.asarray(image).tobytes() + np.asarray(label).tobytes())
        return h.hexdigest()[:20]

    def raw(self):
        """A dataset of (uint8 RGB image of any size, int32 label or multi-hot row), in order."""
        import tensorflow as tf

        if self.tfds_dataset is not None:
            return self.tfds_dataset.map(lambda x, y: (x, tf.cast(y, tf.int32)))
        # As bytes: a file name that is not UTF-8 (an old archive's Latin-1 names) is still a path.
        paths = [os.fsencode(p) for p in self.paths]
        ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(self.labels, tf.int32)))
        return ds.map(lambda p, y: (decode_image(tf.io.read_file(p)), y), num_parallel_calls=_threads())

    def _decoded(self, image_size: int):
        return self.raw().map(lambda x, y: (resize_image(x, image_size), y), num_parallel_calls=_threads())

    def dataset(self, image_size: int, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                cache: typing.Optional[bool] = None, repeat: bool = False):
        """Batches of (float32 images [B, S, S, 3] in 0..255, int32 labels [B] or multi-hot [B, C]).

        Decoding and resizing run in parallel; the decoded images are cached in
        memory when they fit, so later epochs cost no decoding at all.
        """
        if cache is None:
            cache = len(self) * image_size * image_size * 3 * 4 <= MEMORY_CACHE_BYTES
        if cache:
            # One cache per split and size: stage 1's feature pass, stage 2's epochs, evaluation
            # and tuning trials then decode each image once (the newest size only, to bound memory).
            if self._resized is None or self._resized[0] != image_size:
                self._resized = (image_size, self._decoded(image_size).cache())
            ds = self._resized[1]
        else:
            ds = self._decoded(image_size)
        if shuffle:
            ds = ds.shuffle(min(len(self), 10000), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size).prefetch(2)
        return with_options(ds)


def with_options(ds):
    """Our datasets' options: deterministic, and no autotune.

    Autotune's thread-pool teardown idles 5-8 s at the end of an epoch or a
    `predict` call on small CPUs; fixed parallelism does not.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _threads() -> int:
    return max(2, os.cpu_count() or 2)


@dataclasses.dataclass
class ImageData:
    """A labelled image dataset with its train and validation splits.

    Args:
        class_names: label names in label order.
        train: the training split.
        val: the validation split.
        test: an optional test split.
        skipped: (path, reason) of files left out because they are unreadable.
        source: the source string it was loaded from.
        files: what the decode check learned about each file
            (`tfl.data.images.FileInfo` by path; folder sources only).
        warnings: problems that did not stop loading (empty class folders,
            files outside class folders).
        multi_label: the labels are multi-hot rows (several classes per
            image) rather than one class per image.
        layout: where the splits came from, when the source says more than
            its name (tables: the split column, or a held-out fraction).
    """

    class_names: typing.List[str]
    train: Split
    val: Split
    test: typing.Optional[Split] = None
    skipped: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)
    source: str = ""
    files: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    warnings: typing.List[str] = dataclasses.field(default_factory=list)
    multi_label: bool = False
    layout: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> typing.List[int]:
        """Training images per class (multi-label: images that have the class)."""
        return label_counts(self.train.labels, self.num_classes)

    def describe(self) -> str:
        counts = ", ".join(f"{n} {c}" for n, c in zip(self.class_names, self.class_counts()))
        kind = "labels" if self.multi_label else "classes"
        text = (f"{self.source}: {len(self.train)} train / {len(self.val)} val images, "
                f"{self.num_classes} {kind} ({counts})")
        if self.multi_label and len(self.train):
            text += f", {sum(self.class_counts()) / len(self.train):.2f} labels per image"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} unreadable file(s)"
        return text


def label_counts(labels: typing.Sequence, num_classes: int) -> typing.List[int]:
    """Images per class: each integer label counts once, each multi-hot row once per class it has."""
    counts = [0] * num_classes
    for y in labels:
        if isinstance(y, (int, np.integer)):
            counts[y] += 1
        else:
            for i, v in enumerate(y):
                counts[i] += int(v)
    return counts


def label_matrix(labels: typing.Sequence, num_classes: int) -> np.ndarray:
    """int32 multi-hot rows [N, C] of integer labels or multi-hot rows."""
    out = np.zeros((len(labels), num_classes), np.int32)
    for i, y in enumerate(labels):
        if isinstance(y, (int, np.integer)):
            out[i, y] = 1
        else:
            out[i] = y
    return out


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
        parsed = tables.read_table(table, root=root, expect_multi_label=multi_label, **_table_options(config))
        with _images.decode_session():
            return _from_table(parsed, config, seed, multi_label, "table")
    source = normalize_source(config.source)
    if source != config.source:
        config = dataclasses.replace(config, source=source)
    kind, _, rest = config.source.partition(":")
    if kind == "folder" and rest:
        with _images.decode_session():  # one TensorFlow decode helper for all splits, if one is needed
            data = _load_folder(rest, config, seed)
    elif kind == "csv" and rest:
        parsed = tables.read_csv(rest, expect_multi_label=multi_label, **_table_options(config))
        with _images.decode_session():
            return _from_table(parsed, config, seed, multi_label, config.source)
    elif kind == "tfds" and rest:
        data = _load_tfds(rest, config, multi_label)
    elif kind not in SOURCE_KINDS and ("/" in config.source or config.source.startswith((".", "~"))):
        raise UsageError(f"--data '{config.source}': no such folder; give an existing folder (folder:PATH), "
                         "a table of labels (csv:PATH) or a tfds dataset (tfds:NAME)")
    else:
        raise UsageError(f"--data '{config.source}' is not folder:PATH, csv:PATH or tfds:NAME[/CONFIG]")
    return as_multi_label(data) if multi_label and not data.multi_label else data


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


def _table_options(config: DataConfig) -> dict:
    return {"path_column": config.path_column, "label_column": config.label_column,
            "split_column": config.split_column, "label_delimiter": config.label_delimiter}


def _from_table(table, config: DataConfig, seed: int, multi_label: typing.Optional[bool], source: str) -> ImageData:
    """The `ImageData` of a parsed table: splits, file checks, hold-out, the same rules as folders."""
    several = next((e for e in table.entries if e.several_at), None)
    if several is not None and multi_label is False:
        raise UsageError(f"{several.several_at}: {os.path.basename(several.path)} has {len(several.labels)} labels "
                         f"({', '.join(several.labels)}): train with --multi-label, or give each image one label")
    multi = bool(multi_label) or several is not None
    skipped = list(table.skipped)
    if skipped and config.strict:
        where, reason = skipped[0]
        raise UsageError(f"{where}: {reason} ({len(skipped)} bad row(s); drop --strict to skip them)")
    val_name = _table_val_split(table, config)
    train_entries = [e for e in table.entries if e.split in (None, "train")]
    class_names = sorted({lab for e in train_entries for lab in e.labels})
    if not train_entries:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UsageError(f"{source} has no usable training rows{first}")
    if len(class_names) < 2:
        raise UsageError(f"only one class ({class_names[0]}) in the training rows of {source}: a classifier "
                         "needs at least two")
    index = {c: i for i, c in enumerate(class_names)}
    for e in table.entries:
        unknown = [lab for lab in e.labels if lab not in index]
        if unknown:
            raise UsageError(f"{e.where}: class '{unknown[0]}' is only in {e.split} (no training row has it): "
                             "add training images of it or remove the row")
    infos = _images.inspect_files([e.path for e in table.entries])
    files = {i.path: i for i in infos}
    problems = [(i.path, i.problem) for i in infos if i.problem]
    if problems and config.strict:
        path, reason = problems[0]
        raise UsageError(f"{path}: {reason} ({len(problems)} bad file(s); drop --strict to skip them)")
    skipped += problems
    bad = {p for p, _ in problems}

    def label_of(e):
        if multi:
            return tuple(int(c in e.labels) for c in class_names)
        return index[e.labels[0]]

    def split(name, wanted):
        chosen = [e for e in table.entries if e.path not in bad and e.split in wanted]
        return Split(name, [label_of(e) for e in chosen], [e.path for e in chosen])

    train = split("train", (None, "train"))
    counts = label_counts(train.labels, len(class_names))
    for label, count in enumerate(counts):
        if not count:
            first = next(e.where for e in train_entries if class_names[label] in e.labels)
            raise UsageError(f"class {class_names[label]} has no usable training images: every training row of it "
                             f"(first: {first}) was skipped (tfl check lists why)")
    val = split("val", (val_name,)) if val_name else None
    columns = f"columns {table.columns['path']}, {table.columns['label']}" + (
        f", {table.columns['split']}" if table.columns["split"] else "")
    layout = f"{table.name} ({columns}); validation from its {val_name} rows"
    if val is None or not len(val):
        train, val = _hold_out(train, config.val_fraction, seed)
        why = "no split column" if not table.has_split else f"no {val_name} rows"
        layout = f"{table.name} ({columns}); {why}: {config.val_fraction:.0%} of train held out for validation"
    test_name = "test" if val_name != "test" else None
    test = split("test", (test_name,)) if test_name and any(e.split == test_name for e in table.entries) else None
    for s in (train, val):
        if len(s) == 0:
            raise UsageError(f"the {s.name} split of {source} has no readable images")
    return ImageData(class_names, train, val, test, skipped, source=source, files=files,
                     warnings=list(table.warnings), multi_label=multi, layout=layout)


def _table_val_split(table, config: DataConfig) -> typing.Optional[str]:
    """The split value whose rows validate (`val`, or `--val-split`), or None to hold out part of train."""
    if not table.has_split:
        if config.val_split:
            raise UsageError(f"--val-split {config.val_split}: {table.name} has no split column; add one "
                             "(train/val/test per row) or leave --val-split out to hold out part of train")
        return None
    if config.val_split is None:
        return "val"
    from tfl.data.tables import SPLITS

    name = SPLITS.get(config.val_split.strip().lower())
    if name in (None, "train"):
        raise UsageError(f"--val-split {config.val_split}: for a table, use val or test (a split column value)")
    return name


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
        train, val = _hold_out(train, config.val_fraction, seed)
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


def _hold_out(train: Split, fraction: float, seed: int):
    """Stratified, seeded split of `train` into train and validation."""
    import random

    rng = random.Random(seed)
    by_class: dict = {}
    for path, label in zip(train.paths, train.labels):
        by_class.setdefault(label, []).append(path)
    tr, va = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label])
        rng.shuffle(items)
        n_val = max(1, round(len(items) * fraction)) if len(items) > 1 else 0
        va += [(p, label) for p in items[:n_val]]
        tr += [(p, label) for p in items[n_val:]]
    return (Split("train", [y for _, y in tr], [p for p, _ in tr]),
            Split("val", [y for _, y in va], [p for p, _ in va]))


def _load_tfds(spec: str, config: DataConfig, multi_label: typing.Optional[bool] = None) -> "ImageData":
    """Loads a prepared (or downloadable) tfds dataset as an `ImageData`.

    The label feature is a `ClassLabel` (one class per image) or, for
    multi-label data, a `Sequence(ClassLabel)` (the classes of each image), a
    `FeaturesDict` of boolean or integer scalars (one per class, named by its
    key) or a multi-hot `Tensor` of shape `[classes]`.
    """
    import tensorflow_datasets as tfds

    from tfl.data import datasets as local

    name = spec.strip("/")
    if local.is_local_builder(name.split("/")[0]):
        local.prepare(name, config.data_dir)
    try:
        builder = tfds.builder(name, data_dir=config.data_dir)
    except Exception as e:  # tfds raises several types for unknown names
        raise UsageError(f"--data tfds:{name}: {str(e).splitlines()[0]}") from None
    if not builder.is_prepared():
        if not config.download:
            raise UsageError(
                f"tfds dataset {name} is not prepared in {builder.data_dir}: "
                "prepare it online first (tfds build) or point --data-dir at a prepared copy"
            )
        if type(builder).__module__.startswith("tensorflow_datasets."):
            # A catalog dataset downloads its files; a builder of one's own may generate them.
            _reachable_or_fail(name, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - tfds and requests raise many types; the user needs one line
            why = " ".join(str(e).split())[:160] or type(e).__name__
            raise TflError(f"tfds:{name}: the download failed ({why}); give the images as --data folder:PATH, "
                           f"or prepare the dataset where there is a network and pass --data-dir") from None
    features = builder.info.features
    image_key, label_key = (tuple(builder.info.supervised_keys or ()) + (None, None))[:2]
    image_key = image_key or "image"
    label_key = config.label_column or label_key or next((k for k in ("label", "labels") if k in features), "label")
    if label_key not in features or image_key not in features:
        missing = label_key if label_key not in features else image_key
        raise UsageError(f"tfds:{name}: no feature '{missing}' (features: {', '.join(features.keys())}); "
                         "name the label feature with --label-column")
    class_names, to_label, multi = _tfds_labels(name, label_key, features[label_key])
    if multi and multi_label is False:
        raise UsageError(f"tfds:{name}: label feature '{label_key}' gives each image several labels: "
                         "train with --multi-label")
    splits = list(builder.info.splits.keys())
    train_spec = config.train_split
    val_spec = config.val_split
    if val_spec is None:
        val_spec = next((s for s in ("validation", "val", "test") if s in splits), None)
    if val_spec is None:
        # No validation split: hold out the end of the training split.
        keep = round(100 * (1 - config.val_fraction))
        train_spec, val_spec = f"{config.train_split}[:{keep}%]", f"{config.train_split}[{keep}%:]"

    def split(spec):
        try:
            ds = builder.as_dataset(split=spec, shuffle_files=False)
        except Exception as e:
            raise UsageError(f"tfds:{name}: bad split '{spec}' ({str(e).splitlines()[0]}); "
                             f"splits: {', '.join(splits)}") from None
        ds = ds.map(lambda ex: (ex[image_key], to_label(ex[label_key])))
        # Counting labels must not decode every image.
        labels_only = builder.as_dataset(split=spec, shuffle_files=False,
                                         decoders={image_key: tfds.decode.SkipDecoding()})
        batches = labels_only.map(lambda ex: to_label(ex[label_key])).batch(4096).as_numpy_iterator()
        if multi:
            labels = [tuple(int(v) for v in row) for batch in batches for row in batch]
        else:
            labels = [int(v) for batch in batches for v in batch]
        return Split(spec, labels, tfds_dataset=ds)

    return ImageData(class_names, split(train_spec), split(val_spec), source=f"tfds:{name}", multi_label=multi)


def _tfds_labels(name: str, key: str, feature):
    """(class names, label value -> int32 class or multi-hot row, multi-label?) of a tfds label feature."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return list(feature.names), lambda y: tf.cast(y, tf.int32), False
    inner = getattr(feature, "feature", None)
    if isinstance(feature, tfds.features.Sequence) and isinstance(inner, tfds.features.ClassLabel):
        n = inner.num_classes

        def multi_hot(ids):
            # Each listed class once; an image with no class gets a row of zeros.
            return tf.minimum(tf.reduce_sum(tf.one_hot(tf.cast(ids, tf.int32), n, dtype=tf.int32), axis=0), 1)

        return list(inner.names), multi_hot, True
    if isinstance(feature, tfds.features.FeaturesDict):
        keys = list(feature.keys())
        if keys and all(isinstance(feature[k], tfds.features.Tensor) and not feature[k].shape
                        and (feature[k].dtype.is_bool or feature[k].dtype.is_integer) for k in keys):
            return keys, lambda d: tf.stack([tf.cast(tf.cast(d[k], tf.bool), tf.int32) for k in keys]), True
    if (isinstance(feature, tfds.features.Tensor) and len(feature.shape) == 1 and feature.shape[0]
            and (feature.dtype.is_bool or feature.dtype.is_integer)):
        names = [f"{key}_{i}" for i in range(feature.shape[0])]
        return names, lambda y: tf.cast(tf.cast(y, tf.bool), tf.int32), True
    raise UsageError(f"tfds:{name}: label feature '{key}' is not a ClassLabel, a Sequence of ClassLabel, a dict of "
                     "booleans or a multi-hot tensor; name another feature with --label-column")


def _reachable_or_fail(name: str, data_dir: str) -> None:
    """Raises a one-line `UsageError` when tfds' download host cannot be reached (its retries take minutes)."""
    from tfl._network import unreachable

    why = unreachable()
    if why:
        raise UsageError(
            f"tfds:{name} is not prepared in {data_dir} and cannot be downloaded: {why}; give the images as "
            "--data folder:PATH, or prepare the dataset where there is a network (tfds build) and pass --data-dir")
