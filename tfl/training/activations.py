"""Cached backbone outputs: the one owner of pooled features and cut activations.

With the backbone frozen and in inference mode, its output for an image never
changes, so recomputing it every epoch (what plain Keras does) is wasted work.
Two kinds of output are cached, both per copy of the training images (the
first plain, the others passed through the model's augmentation layers; epoch
`e` trains on copy `e % copies`) and once for the validation images:

* **pooled features** (`FeatureCache`): what stage 1's head trains on;
* **cut activations** (`CutActivations`): the tensors where stage 2's
  trainable layers begin (`BottomSplit`), so stage 2 trains the top of the
  backbone without running its frozen bottom again.

`ActivationStore` owns both: it computes them (both in one pass when they fit
together), keeps them in memory under one budget (least recently used first
out, so the trials of a search share them), and writes pooled features that
do not fit to `.npy` files under its `cache_dir` (the run folder's
`features/`, or a search's), in a sub-folder named by a digest of everything
they depend on: the weights of the backbone, its input size and pooling, the
augmentation, the number of copies and the seed, and the data (paths, sizes
and modification times of the files, or the tfds split). A changed backbone,
weights file, size or dataset gets a new digest, so a stale cache is never
read; a resumed run finds its own.
"""


from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil

import numpy as np

from tfl import _compat
from tfl._progress import Progress
from tfl.models import classifier as model_lib

# Features bigger than this go to disk (when a cache folder is given).
MEMORY_BUDGET_BYTES = 1024**3
# Shuffle buffer, in bytes, of features streamed from disk.
_DISK_SHUFFLE_BYTES = 128 * 1024**2
_FORMAT = 2  # bump when the files' layout changes (2: meta.json records sizes and checksums)


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
    """Pooled backbone features of a dataset's train (one array per copy) and validation splits.

    Made by `ActivationStore.features`; in memory, or memory-mapped `.npy`
    files when `on_disk`.

    Attributes:
        train: one `(n, dim)` array per copy of the training images.
        val: the `(n, dim)` array of the validation images.
        copies: number of training copies.
        dim: feature size.
        on_disk: the arrays are `.npy` files in `folder`.
        reused: found complete on disk (or in the store's memory) instead of computed.

    Examples:
        >>> cache = ActivationStore().features(model, data, 224, 32, copies=2)
        >>> cache.train[0].shape
        (244, 256)
    """

    def __init__(self, train, val, train_labels, val_labels, *, seed: int = 0, on_disk: bool = False,
                 folder=None, reused: bool = False):
        self.train, self.val = list(train), val
        self.train_labels, self.val_labels = train_labels, val_labels
        self.copies, self.seed = len(self.train), seed
        self.dim = int(val.shape[-1])
        self.on_disk, self.folder, self.reused = on_disk, folder, reused

    @property
    def nbytes(self) -> int:
        return 0 if self.on_disk else sum(int(a.nbytes) for a in self.train) + int(self.val.nbytes)

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


class CutActivations:
    """Activations of the backbone's frozen bottom at a `BottomSplit`'s cut, per copy and for validation.

    Attributes:
        train: per copy, one array per cut tensor.
        val: one array per cut tensor.
        copies: number of training copies.
    """

    def __init__(self, train, val, train_labels, val_labels):
        self.train, self.val = train, val
        self.train_labels, self.val_labels = train_labels, val_labels
        self.copies = len(train)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for arrays in self.train for a in arrays) + sum(int(a.nbytes) for a in self.val)

    def datasets(self, label_fn, batch_size: int, seed: int):
        """(endless train batches, one copy per epoch; val batches) of cut activations."""
        import tensorflow as tf

        from tfl.data.loading import with_options

        def elements(arrays, labels):
            x = arrays[0] if len(arrays) == 1 else tuple(arrays)
            return tf.data.Dataset.from_tensor_slices((x, labels))

        parts = None
        for i, arrays in enumerate(self.train):
            ds = elements(arrays, self.train_labels).shuffle(len(self.train_labels), seed=seed + i,
                                                             reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            parts = ds if parts is None else parts.concatenate(ds)
        train_ds = with_options(parts.repeat().map(lambda x, y: (x, label_fn(y))).prefetch(2))
        val_ds = elements(self.val, self.val_labels).batch(batch_size).map(lambda x, y: (x, label_fn(y))).cache()
        return train_ds, with_options(val_ds.prefetch(2))


class BottomSplit:
    """A tfl classifier cut where stage 2's trainable layers begin.

    Args:
        model: a tfl classifier.
        unfrozen: indices of the backbone layers stage 2 unfreezes.

    Attributes:
        top: cut activations -> class scores (the layers from the cut, the
            pooling and the head; shared with `model`, so training `top`
            trains the classifier).
        first: index of the first unfrozen backbone layer (where the cut is).
        nbytes_per_image: bytes of one image's cut activations.

    Examples:
        >>> split = BottomSplit(model, Unfreeze.parse("2blocks").layer_indices(len(backbone.layers), block_ids))
        >>> split.top.input_shape
        (None, 14, 14, 128)
    """

    def __init__(self, model, unfrozen):
        import keras
        import tensorflow as tf

        backbone = model_lib.backbone_of(model)
        first = self.first = min(unfrozen)
        index = {id(layer): i for i, layer in enumerate(backbone.layers)}
        cut = []  # tensors made below the first unfrozen layer and used from it on
        for layer in backbone.layers[first:]:
            for t in _compat.layer_input_tensors(layer):
                if index.get(id(_compat.producing_layer(t)), first) < first and all(t is not c for c in cut):
                    cut.append(t)
        single = len(cut) == 1
        bottom_part = keras.Model(backbone.input, cut[0] if single else cut, name="frozen_bottom")
        top_part = keras.Model(cut[0] if single else cut, backbone.output, name="unfrozen_top")

        image = keras.Input(model.input_shape[1:], name="image")
        bottom = keras.Model(image, bottom_part(model.get_layer("preprocess")(image), training=False))
        inputs = [keras.Input(t.shape[1:], dtype=t.dtype, name=f"cut_{i}") for i, t in enumerate(cut)]
        pooled = model.get_layer("pool")(top_part(inputs[0] if single else inputs, training=False))
        self.top = keras.Model(inputs[0] if single else inputs, model.get_layer("head")(pooled), name="tfl_top")
        # Checkpoints hold the classifier's weights whichever way stage 2 is fed, so a checkpoint
        # always loads into the classifier (object.__setattr__: Keras must not track these).
        object.__setattr__(self.top, "save_weights", model.save_weights)
        object.__setattr__(self.top, "load_weights", model.load_weights)
        self.model = model
        pooling = keras.Model(inputs[0] if single else inputs, pooled)
        self.single = single
        self.nbytes_per_image = sum(int(np.prod(t.shape[1:])) * np.dtype(t.dtype).itemsize for t in cut)
        self.shapes = [tuple(t.shape[1:]) for t in cut]

        spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        names = [layer.name for layer in model.layers]
        augment = model.get_layer("augmentation") if "augmentation" in names else None

        def both(x):
            b = bottom(x, training=False)
            return b, pooling(b, training=False)

        self.plain = tf.function(both, input_signature=spec, autograph=False)
        self.augmented = None if augment is None else tf.function(
            lambda x: both(augment(x, training=True)), input_signature=spec, autograph=False)

    def describe(self) -> str:
        return " + ".join("x".join(str(d) for d in s) for s in self.shapes)


def _compute_both(split: BottomSplit, train_images, val_images, copies: int, progress=None):
    """(train activations per copy, val activations, train features per copy, val features) in one pass."""
    def run(fn, dataset):
        acts, feats = [], []
        for x, _ in dataset:
            b, f = fn(x)
            acts.append([np.asarray(v) for v in (b if isinstance(b, (list, tuple)) else [b])])
            feats.append(np.asarray(f))
            if progress is not None:
                progress.update(len(feats[-1]))
        return [np.concatenate(parts) for parts in zip(*acts)], np.concatenate(feats)

    fns = [split.plain] + [split.augmented] * (copies - 1)
    train = [run(fn, train_images) for fn in fns]
    val = run(split.plain, val_images)
    return [a for a, _ in train], val[0], [f for _, f in train], val[1]


class ActivationStore:
    """Computes, keeps and shares the cached backbone outputs of one process.

    One budget covers everything it keeps in memory (pooled features and cut
    activations alike); past it, the least recently used entries are dropped
    (and features that never fit go to disk under `cache_dir`). A run makes its
    own store; a search passes one store to all its trials, so trials with the
    same backbone, weights, size, augmentation and data share one feature pass.

    Args:
        cache_dir: folder for features that do not fit in memory (`None`:
            memory only).
        memory_budget: bytes kept in memory; default `default_memory_budget()`.
        keep: most entries kept in memory at once (each is the size of the
            features of a whole dataset).

    Examples:
        >>> store = ActivationStore(cache_dir="runs/ants/features")
        >>> feats = store.features(model, data, 224, 32, copies=8, seed=42)
        >>> feats.copies, feats.reused
        (8, False)
    """

    def __init__(self, cache_dir=None, memory_budget=None, keep: int = 2):
        self.cache_dir = cache_dir
        self.memory_budget = default_memory_budget() if memory_budget is None else memory_budget
        self.keep = keep
        self._memory = collections.OrderedDict()  # key -> FeatureCache or CutActivations, most recent last

    # -- memory -------------------------------------------------------------------------------------
    def _get(self, key):
        entry = self._memory.get(key)
        if entry is not None:
            self._memory.move_to_end(key)
        return entry

    def _put(self, key, entry) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.keep or (
                len(self._memory) > 1 and sum(e.nbytes for e in self._memory.values()) > self.memory_budget):
            self._memory.popitem(last=False)

    def fits(self, nbytes: int) -> bool:
        """Whether `nbytes` of outputs may be kept in memory."""
        return nbytes <= self.memory_budget

    # -- pooled features ---------------------------------------------------------------------------
    def features(self, model, data, image_size: int, batch_size: int, copies: int = 1, seed: int = 0, *,
                 split=None) -> FeatureCache:
        """The pooled features of `model`'s backbone on `data`: from memory, from disk, or computed.

        Args:
            model: a tfl classifier (its preprocessing, backbone and pooling;
                its augmentation too when `copies > 1`).
            data: the `ImageData`.
            image_size: the model's input size.
            batch_size: batch size of the pass.
            copies: versions of the training set (the first plain).
            seed: seed of the augmentation and of the shuffling.
            split: a `BottomSplit`: when the features are computed here and
                its activations fit in memory beside them, keep those too
                (same pass), for `activations` to hand to stage 2.
        """
        plain, augmented, dim = _extractors(model)
        copies = copies if augmented is not None else 1
        key = cache_key(model, data, image_size, copies, seed)
        train_labels = np.asarray(data.train.labels, np.int32)
        val_labels = np.asarray(data.val.labels, np.int32)
        cached = self._get(key)
        if cached is not None:
            return FeatureCache(cached.train, cached.val, train_labels, val_labels, seed=seed, reused=True)
        nbytes = (copies * len(data.train) + len(data.val)) * dim * 4
        on_disk = self.cache_dir is not None and nbytes > self.memory_budget
        train_images = data.train.dataset(image_size, batch_size)
        val_images = data.val.dataset(image_size, batch_size)
        images = copies * len(data.train) + len(data.val)
        fns = [plain] + [augmented] * (copies - 1)
        progress = Progress("backbone features", images)
        if not on_disk and split is not None and self.fits(nbytes + images * split.nbytes_per_image):
            with progress:
                train_acts, val_acts, train, val = _compute_both(split, train_images, val_images, copies, progress)
            self._put(_cut_key(key, split), CutActivations(train_acts, val_acts, train_labels, val_labels))
        elif not on_disk:
            with progress:
                train = [_batched_call(fn, train_images, progress) for fn in fns]
                val = _batched_call(plain, val_images, progress)
        if not on_disk:
            cache = FeatureCache(train, val, train_labels, val_labels, seed=seed)
            self._put(key, cache)
            return cache
        folder = os.path.join(self.cache_dir, key)
        reused = _complete(folder, key)
        if not reused:
            with progress:
                _write(self.cache_dir, key, [(f"train{i}", fn, train_images, len(data.train))
                                             for i, fn in enumerate(fns)]
                       + [("val", plain, val_images, len(data.val))], dim, progress)
        train = [np.load(os.path.join(folder, f"train{i}.npy"), mmap_mode="r") for i in range(copies)]
        val = np.load(os.path.join(folder, "val.npy"), mmap_mode="r")
        return FeatureCache(train, val, train_labels, val_labels, seed=seed, on_disk=True, folder=folder,
                            reused=reused)

    # -- cut activations ---------------------------------------------------------------------------
    def activations(self, split: BottomSplit, data, image_size: int, batch_size: int, copies: int, seed: int = 0,
                    *, kept_copies=None):
        """The activations at `split`'s cut: kept by an earlier `features` pass, or computed now.

        Args:
            split: the cut (of the model being trained).
            data: the `ImageData`.
            image_size, batch_size, seed: as for `features`.
            copies: copies to compute when none are kept.
            kept_copies: the copies an earlier `features` pass of this model
                used: its activations are taken when they are still kept.

        Returns:
            `(CutActivations, reused)`.
        """
        for n in ([kept_copies] if kept_copies else []) + [copies]:
            key = _cut_key(cache_key(split.model, data, image_size, n, seed), split)
            kept = self._get(key)
            if kept is not None:
                return kept, True
        train_labels = np.asarray(data.train.labels, np.int32)
        val_labels = np.asarray(data.val.labels, np.int32)
        with Progress("activations of the frozen bottom", copies * len(data.train) + len(data.val)) as progress:
            train_acts, val_acts, _, _ = _compute_both(split, data.train.dataset(image_size, batch_size),
                                                       data.val.dataset(image_size, batch_size), copies, progress)
        acts = CutActivations(train_acts, val_acts, train_labels, val_labels)
        self._put(_cut_key(cache_key(split.model, data, image_size, copies, seed), split), acts)
        return acts, False


def _cut_key(features_key: str, split: BottomSplit) -> str:
    return f"{features_key}/cut{split.first}"


def _batched_call(fn, dataset, progress=None) -> np.ndarray:
    out = []
    for x, _ in dataset:
        out.append(fn(x).numpy())
        if progress is not None:
            progress.update(len(out[-1]))
    return np.concatenate(out, axis=0)


def _complete(folder: str, key: str) -> bool:
    """Whether `folder` holds the whole cache of `key`, each file as it was written.

    meta.json records each file's size and CRC-32; a file that was truncated
    or edited since (a full disk, a copy cut short, another program) does not
    match, and the cache is computed again, with one line saying why, instead
    of being read as garbage. The check reads the files once per process
    (about 1 s per GB).
    """
    meta = os.path.join(folder, "meta.json")
    if not os.path.exists(meta):
        return False
    try:
        with open(meta, encoding="utf-8") as f:
            info = json.load(f)
        if not isinstance(info, dict) or info.get("key") != key:
            return False
        files = info.get("files")
        if not isinstance(files, dict) or not files:
            raise ValueError("meta.json lists no files (written by an older tfl)")
        stamp = tuple((name, os.stat(os.path.join(folder, name)).st_mtime_ns) for name in sorted(files))
        if (folder, stamp) in _VERIFIED:
            return True
        for name, expected in sorted(files.items()):
            path = os.path.join(folder, name)
            size = os.path.getsize(path)
            if size != expected["bytes"]:
                raise ValueError(f"{name} has {size:,} bytes, {expected['bytes']:,} were written")
            if _crc32(path) != expected["crc32"]:
                raise ValueError(f"{name} changed since it was written (checksum)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        from tfl._logging import log

        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        log.info(f"feature cache {folder} is damaged ({why}): computing it again")
        return False
    _VERIFIED.add((folder, stamp))
    return True


# (folder, file modification times) of caches verified in this process: a search's trials share one.
_VERIFIED: set = set()


def _crc32(path: str) -> int:
    import zlib

    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _write(cache_dir: str, key: str, parts, dim: int, progress=None) -> None:
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
                if progress is not None:
                    progress.update(len(feats))
            if i != n:
                raise RuntimeError(f"feature cache: {name} yielded {i} images, expected {n}")
            out.flush()
            del out
        files = {f"{p[0]}.npy": {"bytes": os.path.getsize(os.path.join(tmp, f"{p[0]}.npy")),
                                 "crc32": _crc32(os.path.join(tmp, f"{p[0]}.npy"))} for p in parts}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"key": key, "dim": dim, "parts": [p[0] for p in parts], "files": files}, f)
        final = os.path.join(cache_dir, key)
        shutil.rmtree(final, ignore_errors=True)  # an unreadable one: _complete() said no
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
