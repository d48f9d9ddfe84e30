"""What every data source ends as: `ImageData` of `Split`s, and the one decode and resize they share.

A `Split` is image files (or a tfds split) with their labels (an int, or a multi-hot row);
`Split.dataset(...)` turns it into batches of float32 RGB images (0-255) of the model's
input size. Decoding (`decode_image`, EXIF orientation included) and resizing
(`resize_image`) are the functions training, prediction, the report and the export all
use, so a served model sees exactly the pixels the trained model saw.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import numpy as np

# Decoded float32 images of a split are cached in memory up to this many bytes by default
# (`tfl._memory.images_bytes()`, read when a dataset is made, is what counts).
MEMORY_CACHE_BYTES = 128 * 1024**2


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

    def raw(self, *, shuffle: bool = False, seed: int = 0):
        """A dataset of (uint8 RGB image of any size, int32 label or multi-hot row), in order.

        `shuffle`: in a new order each pass (file names are shuffled before
        decoding, so the shuffle holds names, not images).
        """
        import tensorflow as tf

        if self.tfds_dataset is not None:
            ds = self.tfds_dataset.map(lambda x, y: (x, tf.cast(y, tf.int32)))
            # A tfds split holds the images themselves: a buffer of a bounded number of them.
            return ds.shuffle(min(len(self), 1024), seed=seed, reshuffle_each_iteration=True) if shuffle else ds
        # As bytes: a file name that is not UTF-8 (an old archive's Latin-1 names) is still a path.
        paths = [os.fsencode(p) for p in self.paths]
        ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(self.labels, tf.int32)))
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        return ds.map(lambda p, y: (decode_image(tf.io.read_file(p)), y), num_parallel_calls=_threads())

    def _decoded(self, image_size: int, *, shuffle: bool = False, seed: int = 0):
        return self.raw(shuffle=shuffle, seed=seed).map(lambda x, y: (resize_image(x, image_size), y),
                                                        num_parallel_calls=_threads())

    def dataset(self, image_size: int, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                cache: typing.Optional[bool] = None, repeat: bool = False):
        """Batches of (float32 images [B, S, S, 3] in 0..255, int32 labels [B] or multi-hot [B, C]).

        Decoding and resizing run in parallel; the decoded images are cached in
        memory when they fit `tfl._memory`'s budget, so later epochs cost no
        decoding at all. Beyond it, each pass decodes the files again, so memory
        does not grow with the data.
        """
        from tfl import _memory

        if cache is None:  # decoded already at this size (a caller asked for it), or small enough to keep
            cache = ((self._resized is not None and self._resized[0] == image_size)
                     or len(self) * image_size * image_size * 3 * 4 <= _memory.images_bytes())
        if cache:
            # One cache per split and size: stage 1's feature pass, stage 2's epochs, evaluation
            # and tuning trials then decode each image once (the newest size only, to bound memory).
            if self._resized is None or self._resized[0] != image_size:
                self._resized = (image_size, self._decoded(image_size).cache())
            ds = self._resized[1]
            if shuffle:
                ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        else:
            ds = self._decoded(image_size, shuffle=shuffle, seed=seed)
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


def hold_out(train: Split, fraction: float, seed: int, name: str = "val"):
    """Stratified, seeded split of `train` into train and a held-out split called `name`."""
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
            Split(name, [y for _, y in va], [p for p, _ in va]))
