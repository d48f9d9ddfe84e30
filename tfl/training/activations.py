"""Backbone features computed once, so the frozen stage trains only the head.

With the backbone frozen and in inference mode, its pooled output for an
image never changes, so recomputing it every epoch (what plain Keras does) is
wasted work. `FeatureCache` computes the features of the validation images
once and of `copies` versions of the training images (the first plain, the
others passed through the model's augmentation layers); epoch `e` of stage 1
trains on copy `e % copies`.

Features live in memory when they fit `memory_budget`; otherwise they are
written as `.npy` files under `cache_dir` (the run folder's `features/`) in a
sub-folder named by a digest of everything they depend on: the weights of the
backbone, its input size and pooling, the augmentation, the number of copies
and the seed, and the data (paths, sizes and modification times of the files,
or the tfds split). A changed backbone, weights file, size or dataset gets a
new digest, so a stale cache is never read; a resumed run finds its own.

Given a `split` (`tfl.training._frozen_bottom.BottomSplit`), the same pass also keeps
the activations where stage 2's trainable layers begin, so that stage 2
trains the top of the backbone without running its frozen bottom again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil

import numpy as np

from tfl.models import classifier as model_lib

# Features bigger than this go to disk (when a cache folder is given).
MEMORY_BUDGET_BYTES = 1024**3
# Shuffle buffer, in bytes, of features streamed from disk.
_DISK_SHUFFLE_BYTES = 128 * 1024**2
_FORMAT = 1  # bump when the files' layout changes


def default_memory_budget() -> int:
    """`MEMORY_BUDGET_BYTES`, or `TFL_FEATURE_MEMORY_MB` (megabytes) when set."""
    text = os.environ.get("TFL_FEATURE_MEMORY_MB", "").strip()
    if not text:
        return MEMORY_BUDGET_BYTES
    try:
        return int(float(text) * 1024**2)
    except ValueError:
        from tfl.errors import UsageError

        raise UsageError(f"TFL_FEATURE_MEMORY_MB='{text}' is not a number of megabytes") from None


def cache_key(model, data, image_size: int, copies: int, seed: int) -> str:
    """Digest of everything the cached features depend on.

    The backbone is identified by its weights' values (so a different weights
    file or random initialisation is a different cache), the data by
    `Split.fingerprint()` of both splits.
    """
    h = hashlib.sha256()

    def add(obj):
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())

    preprocess = model.get_layer("preprocess")
    pool = model.get_layer("pool")
    add({"format": _FORMAT, "backbone": getattr(preprocess, "backbone", None), "image_size": int(image_size),
         "pool": type(pool).__name__, "dtype": str(pool.compute_dtype), "copies": int(copies),
         "seed": int(seed if copies > 1 else 0),
         "source": data.source, "classes": list(data.class_names)})
    if copies > 1:
        add(_without_names(model.get_layer("augmentation").get_config()))
    for weight in model_lib.backbone_of(model).weights:
        h.update(np.ascontiguousarray(weight.numpy()).tobytes())
    for split in (data.train, data.val):
        h.update(split.fingerprint().encode())
    return h.hexdigest()[:20]


def _without_names(config):
    """A layer config without its auto-numbered names (random_flip_3), which are not behaviour."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def _extractors(model):
    import tensorflow as tf

    extractor = model_lib.feature_extractor(model)
    # Any batch size, so the last, smaller batch does not trace the backbone a second time.
    spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    plain = tf.function(lambda x: extractor(x, training=False), input_signature=spec, autograph=False)
    names = [layer.name for layer in model.layers]
    augment = model.get_layer("augmentation") if "augmentation" in names else None
    augmented = None
    if augment is not None:
        augmented = tf.function(lambda x: extractor(augment(x, training=True), training=False),
                                input_signature=spec, autograph=False)
    return plain, augmented, int(extractor.output_shape[-1])


class FeatureCache:
    """Pooled backbone features of a dataset's train and validation splits.

    Args:
        model: a tfl classifier (its preprocessing, backbone and pooling are
            used; its augmentation layers too when `copies > 1`).
        data: the `ImageData`.
        image_size: the model's input size.
        batch_size: batch size of the feature computation.
        copies: number of versions of the training set to cache.
        seed: seed of the shuffling of the cached features.
        cache_dir: folder for features that do not fit `memory_budget`
            (the run folder's `features/`); `None` keeps them in memory.
        memory_budget: bytes of features kept in memory; default
            `default_memory_budget()`.
        split: a `tfl.training._frozen_bottom.BottomSplit`: also keep, in the same
            pass, the activations at stage 2's cut (`bottom`), when they fit
            in memory too.

    Examples:
        >>> cache = FeatureCache(model, data, 224, 32, copies=2)
        >>> cache.train[0].shape
        (244, 256)
        >>> big = FeatureCache(model, data, 224, 32, cache_dir="runs/big/features", memory_budget=0)
        >>> big.on_disk, big.reused
        (True, False)
    """

    def __init__(self, model, data, image_size: int, batch_size: int, copies: int = 1, seed: int = 0, *,
                 cache_dir=None, memory_budget=None, split=None):
        plain, augmented, dim = _extractors(model)
        self.copies = copies if augmented is not None else 1
        self.seed, self.dim = seed, dim
        self.train_labels = np.asarray(data.train.labels, np.int32)
        self.val_labels = np.asarray(data.val.labels, np.int32)
        self.nbytes = (self.copies * len(data.train) + len(data.val)) * dim * 4
        budget = default_memory_budget() if memory_budget is None else memory_budget
        self.on_disk = cache_dir is not None and self.nbytes > budget
        self.reused = False
        self.folder = None
        self.split, self.bottom = None, None
        train_images = data.train.dataset(image_size, batch_size)
        val_images = data.val.dataset(image_size, batch_size)
        fns = [plain] + [augmented] * (self.copies - 1)
        images = self.copies * len(data.train) + len(data.val)
        if not self.on_disk and split is not None and self.nbytes + images * split.nbytes_per_image <= budget:
            from tfl.training import _frozen_bottom

            train_acts, val_acts, self.train, self.val = _frozen_bottom.compute(split, train_images, val_images,
                                                                                self.copies)
            self.split, self.bottom = split, (train_acts, val_acts)
            return
        if not self.on_disk:
            self.train = [_batched_call(fn, train_images) for fn in fns]
            self.val = _batched_call(plain, val_images)
            return
        key = cache_key(model, data, image_size, self.copies, seed)
        self.folder = os.path.join(cache_dir, key)
        self.reused = _complete(self.folder, key)
        if not self.reused:
            _write(cache_dir, key, [(f"train{i}", fn, train_images, len(data.train)) for i, fn in enumerate(fns)]
                   + [("val", plain, val_images, len(data.val))], dim)
        self.train = [np.load(os.path.join(self.folder, f"train{i}.npy"), mmap_mode="r") for i in range(self.copies)]
        self.val = np.load(os.path.join(self.folder, "val.npy"), mmap_mode="r")

    def train_dataset(self, label_fn, batch_size: int, seed: int = 0, shuffle: bool = True):
        """Endless batches in which each epoch of ceil(n / batch_size) steps is one copy."""
        from tfl.data.loading import with_options

        parts = None
        for i, feats in enumerate(self.train):
            ds = self._features(i, feats, self.train_labels)
            if shuffle:
                buffer = len(feats) if not self.on_disk else max(1024, _DISK_SHUFFLE_BYTES // (self.dim * 4))
                ds = ds.shuffle(min(len(feats), buffer), seed=seed + i, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            parts = ds if parts is None else parts.concatenate(ds)
        return with_options(parts.repeat().map(lambda x, y: (x, label_fn(y))).prefetch(2))

    def val_dataset(self, label_fn, batch_size: int):
        from tfl.data.loading import with_options

        ds = self._features(None, self.val, self.val_labels).batch(batch_size).map(lambda x, y: (x, label_fn(y)))
        if not self.on_disk:
            ds = ds.cache()
        return with_options(ds.prefetch(2))

    def _features(self, copy, feats, labels):
        """(feature vector, label) elements, from memory or streamed from the .npy file."""
        import tensorflow as tf

        if not self.on_disk:
            return tf.data.Dataset.from_tensor_slices((np.asarray(feats), labels))
        name = "val.npy" if copy is None else f"train{copy}.npy"
        dim = self.dim
        records = tf.data.FixedLengthRecordDataset(os.path.join(self.folder, name), dim * 4,
                                                   header_bytes=feats.offset, buffer_size=1 << 20)
        records = records.map(lambda r: tf.reshape(tf.io.decode_raw(r, tf.float32), [dim]))
        return tf.data.Dataset.zip((records, tf.data.Dataset.from_tensor_slices(labels)))


def _batched_call(fn, dataset) -> np.ndarray:
    return np.concatenate([fn(x).numpy() for x, _ in dataset], axis=0)


def _complete(folder: str, key: str) -> bool:
    meta = os.path.join(folder, "meta.json")
    if not os.path.exists(meta):
        return False
    with contextlib.suppress(OSError, ValueError):
        with open(meta, encoding="utf-8") as f:
            return json.load(f).get("key") == key
    return False


def _write(cache_dir: str, key: str, parts, dim: int) -> None:
    """Computes each part into `.npy` files in a temporary folder, then renames it into place.

    A killed run leaves only a temporary folder, which the next write removes:
    a folder named by a key is always complete. Caches of other keys are
    stale for this run folder and are deleted.
    """
    os.makedirs(cache_dir, exist_ok=True)
    for name in os.listdir(cache_dir):
        if name != key:
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
    tmp = os.path.join(cache_dir, f".tmp-{key}-{os.getpid()}")
    os.makedirs(tmp)
    try:
        for name, fn, dataset, n in parts:
            out = np.lib.format.open_memmap(os.path.join(tmp, f"{name}.npy"), mode="w+", dtype="<f4", shape=(n, dim))
            i = 0
            for x, _ in dataset:
                feats = fn(x).numpy()
                out[i:i + len(feats)] = feats
                i += len(feats)
            if i != n:
                raise RuntimeError(f"feature cache: {name} yielded {i} images, expected {n}")
            out.flush()
            del out
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"key": key, "dim": dim, "parts": [p[0] for p in parts]}, f)
        final = os.path.join(cache_dir, key)
        shutil.rmtree(final, ignore_errors=True)  # an unreadable one: _complete() said no
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
