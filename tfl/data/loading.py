"""Data sources (`folder:` and `tfds:`) and the tf.data input pipeline.

Every source ends as the same thing: a `Split` of raw images with integer
labels, which `Split.dataset(...)` turns into batches of float32 RGB images
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
from tfl.errors import UsageError

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
        paths: image file paths (folder sources).
        labels: integer label per image.
        tfds_dataset: a `tf.data.Dataset` of (uint8 image, label) (tfds sources).
    """

    name: str
    labels: typing.List[int]
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
        """A dataset of (uint8 RGB image of any size, int32 label), in order."""
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
        """Batches of (float32 images [B, S, S, 3] in 0..255, int32 labels).

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
    """

    class_names: typing.List[str]
    train: Split
    val: Split
    test: typing.Optional[Split] = None
    skipped: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)
    source: str = ""
    files: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    warnings: typing.List[str] = dataclasses.field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> typing.List[int]:
        counts = [0] * self.num_classes
        for y in self.train.labels:
            counts[y] += 1
        return counts

    def describe(self) -> str:
        counts = ", ".join(f"{n} {c}" for n, c in zip(self.class_names, self.class_counts()))
        text = (f"{self.source}: {len(self.train)} train / {len(self.val)} val images, "
                f"{self.num_classes} classes ({counts})")
        if self.skipped:
            text += f"; skipped {len(self.skipped)} unreadable file(s)"
        return text


def load_data(config: typing.Union[DataConfig, str], seed: int = 42) -> ImageData:
    """Loads a `folder:` or `tfds:` source described by `config`.

    Args:
        config: a `DataConfig`, or just its source string.
        seed: seed of the train/validation hold-out when there is no
            validation split.

    Returns:
        An `ImageData`.

    Examples:
        >>> data = load_data("folder:photos")  # photos/train/<class>/*.jpg
        >>> data.class_names
        ['ants', 'bees']
    """
    if isinstance(config, str):
        config = DataConfig(source=config)
    kind, _, rest = config.source.partition(":")
    if kind == "folder" and rest:
        with _images.decode_session():  # one TensorFlow decode helper for all splits, if one is needed
            return _load_folder(rest, config, seed)
    if kind == "tfds" and rest:
        return _load_tfds(rest, config)
    raise UsageError(f"--data '{config.source}' is not folder:PATH or tfds:NAME[/CONFIG]")


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
    counts = [0] * num_classes
    for y in split.labels:
        counts[y] += 1
    return counts


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


def _load_tfds(spec: str, config: DataConfig) -> "ImageData":
    """Loads a prepared (or downloadable) tfds dataset as an `ImageData`."""
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
        builder.download_and_prepare()
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    label_feature = builder.info.features[label_key]
    if not hasattr(label_feature, "names"):
        raise UsageError(f"tfds:{name}: label feature '{label_key}' is not a ClassLabel")
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
            ds = builder.as_dataset(split=spec, as_supervised=True, shuffle_files=False)
        except Exception as e:
            raise UsageError(f"tfds:{name}: bad split '{spec}' ({str(e).splitlines()[0]}); "
                             f"splits: {', '.join(splits)}") from None
        # Counting labels must not decode every image.
        labels_only = builder.as_dataset(split=spec, shuffle_files=False,
                                         decoders={image_key: tfds.decode.SkipDecoding()})
        batches = labels_only.map(lambda ex: ex[label_key]).batch(4096).as_numpy_iterator()
        labels = [int(v) for batch in batches for v in batch]
        return Split(spec, labels, tfds_dataset=ds)

    return ImageData(list(label_feature.names), split(train_spec), split(val_spec), source=f"tfds:{name}")
