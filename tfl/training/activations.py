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
import os

import numpy as np

from tfl import _memory
from tfl._logging import log
from tfl._progress import Progress
from tfl.models import classifier as model_lib
from tfl.training import _feature_files
from tfl.training._cached import CutActivations, FeatureCache  # noqa: F401 (public here, as before)
from tfl.training._feature_files import cache_key, complete, write
from tfl.training.cut import BottomSplit, calls, compute_both

# The frozen pass's batch on a CPU. Measured on 2 EPYC cores (benchmarks/pipeline.py), 16 images per call
# ran the backbone faster than 32 or more (MobileNet 0.25: 223 against 158 images/s; MobileNetV2: 37
# against 19-34), its activations staying in the caches. On a GPU, larger batches are faster.
CPU_PASS_BATCH = 16


def pass_batch(batch_size: int) -> int:
    """The batch size of a frozen pass: `batch_size`, at most `CPU_PASS_BATCH` when there is no GPU.

    Per-image outputs do not depend on the batch (BatchNorm in inference mode), so this is speed only.
    """
    import tensorflow as tf

    return batch_size if tf.config.list_physical_devices("GPU") else min(batch_size, CPU_PASS_BATCH)


def default_memory_budget() -> int:
    """Half of `tfl._memory`'s budget (512 MiB, or `TFL_MEMORY_MB`): the features' and activations' share."""
    return _memory.arrays_bytes()


def extractors(model):
    """(plain, augmented or None, feature dim): `model`'s traced feature functions, made once per model.

    `plain` is images -> pooled features in inference mode; `augmented` passes
    the images through the model's augmentation first (None without one).
    Both take any batch size, so the last, smaller batch does not trace the
    backbone a second time. Kept per model because tracing a backbone takes
    seconds (MobileNetV2: 1.8 s, a sixth of its pass over hymenoptera's 397
    images): `tfl pick` times batch-1 latency through the same `plain` its
    feature pass then runs.
    """
    made = getattr(model, "_tfl_extractors", None)
    if made is not None:
        return made
    import tensorflow as tf

    extractor = model_lib.feature_extractor(model)
    spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    plain = tf.function(lambda x: extractor(x, training=False), input_signature=spec, autograph=False)
    names = [layer.name for layer in model.layers]
    augment = model.get_layer("augmentation") if "augmentation" in names else None
    augmented = None
    if augment is not None:
        augmented = tf.function(lambda x: extractor(augment(x, training=True), training=False),
                                input_signature=spec, autograph=False)
    made = (plain, augmented, int(extractor.output_shape[-1]))
    # On the model itself, so they live and go with it (a dictionary keyed by the model would keep it alive
    # through the functions' references to its layers); past Keras's attribute tracking, which has no use for them.
    object.__setattr__(model, "_tfl_extractors", made)
    return made


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
                len(self._memory) > 1 and not self.fits(sum(e.nbytes for e in self._memory.values()))):
            self._memory.popitem(last=False)

    def fits(self, nbytes: int) -> bool:
        """Whether `nbytes` of outputs may be kept in memory."""
        return nbytes * _memory.IN_MEMORY_COPIES <= self.memory_budget

    def remember(self, cache: FeatureCache) -> None:
        """Keeps `cache` (made by this or another store, in memory) as the most recently used entry.

        `tfl pick` computes the plain features of several backbones and hands
        the winner's back this way, so that the run that trains it takes its
        plain copy and validation features from here instead of computing them.
        """
        if not cache.on_disk and cache.key:
            self._put(cache.key, cache)

    # -- pooled features ---------------------------------------------------------------------------
    def features(self, model, data, image_size: int, batch_size: int, copies: int = 1, seed: int = 0, *,
                 split=None, plain=None) -> FeatureCache:
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
            plain: what computes the plain features instead of the model's
                traced function (`tfl pick`'s LiteRT model, whose features
                equal TensorFlow's within 1e-4 of their scale, so they are
                kept under the same key). Only with `copies=1`.
        """
        traced, augmented, dim = extractors(model)
        if plain is not None and (copies != 1 or split is not None):
            raise ValueError("features(plain=...) computes one plain copy, without a split")
        plain = traced if plain is None else plain
        copies = copies if augmented is not None else 1
        key = cache_key(model, data, image_size, copies, seed)
        train_labels = np.asarray(data.train.labels, np.int32)
        val_labels = np.asarray(data.val.labels, np.int32)
        cached = self._get(key)
        if cached is not None:
            return FeatureCache(cached.train, cached.val, train_labels, val_labels, seed=seed, reused=True, key=key)
        nbytes = (copies * len(data.train) + len(data.val)) * dim * 4
        on_disk = self.cache_dir is not None and not self.fits(nbytes)
        batch_size = pass_batch(batch_size)
        train_images = data.train.dataset(image_size, batch_size)
        val_images = data.val.dataset(image_size, batch_size)
        images = copies * len(data.train) + len(data.val)
        fns = [plain] + [augmented] * (copies - 1)
        # The plain copy and the validation features do not depend on the augmentation: a pass with
        # one copy (`tfl pick`'s) already holds them, so only the augmented copies are computed.
        cut_to_disk = (not on_disk and split is not None and self.cache_dir is not None
                       and not self.fits(nbytes + images * split.nbytes_per_image))
        # (Not when the cut's activations go to disk from this pass: they need the plain copy's pass anyway.)
        known = (self._get(cache_key(model, data, image_size, 1, seed)) if copies > 1 and not on_disk
                 and not cut_to_disk else None)
        if known is not None:
            log.info(f"backbone features: the plain copy and the validation features are kept from an earlier "
                     f"pass; computing the {copies - 1} augmented "
                     f"cop{'y' if copies == 2 else 'ies'}")
        progress = Progress("backbone features", (copies - 1) * len(data.train) if known is not None else images)
        if cut_to_disk:
            # The activations do not fit in memory: to the disk, in the same pass that keeps the features.
            train, val = self._features_and_activations_on_disk(split, data, train_images, val_images, copies,
                                                                seed, key, progress)
        elif not on_disk and split is not None and self.fits(nbytes + images * split.nbytes_per_image):
            with progress:
                train_acts, val_acts, train, val = compute_both(
                    split, train_images, val_images, copies, progress,
                    plain=None if known is None else (known.train[0], known.val))
            self._put(_cut_key(key, split), CutActivations(train_acts, val_acts, train_labels, val_labels))
        elif not on_disk:
            with progress:
                if known is None:
                    train = _batched_calls(fns, train_images, progress)
                    val = _batched_calls([plain], val_images, progress)[0]
                else:
                    train = [known.train[0]] + _batched_calls(fns[1:], train_images, progress)
                    val = known.val
        if not on_disk:
            cache = FeatureCache(train, val, train_labels, val_labels, seed=seed, key=key)
            self._put(key, cache)
            return cache
        folder = os.path.join(self.cache_dir, key)
        reused = complete(folder, key)
        if not reused:
            with progress:
                write(self.cache_dir, key, [
                    (train_images, len(data.train), [(f"train{i}", fn, None) for i, fn in enumerate(fns)]),
                    (val_images, len(data.val), [("val", plain, None)])], progress)
        train = [np.load(os.path.join(folder, f"train{i}.npy"), mmap_mode="r") for i in range(copies)]
        val = np.load(os.path.join(folder, "val.npy"), mmap_mode="r")
        return FeatureCache(train, val, train_labels, val_labels, seed=seed, on_disk=True, folder=folder,
                            reused=reused, key=key)

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
            if self.cache_dir is not None and complete(os.path.join(self.cache_dir, _cut_name(key)), _cut_name(key)):
                return self._activations_on_disk(split, data, image_size, batch_size, n, seed, key), True
        train_labels = np.asarray(data.train.labels, np.int32)
        val_labels = np.asarray(data.val.labels, np.int32)
        images = copies * len(data.train) + len(data.val)
        key = _cut_key(cache_key(split.model, data, image_size, copies, seed), split)
        if self.cache_dir is not None and not self.fits(images * split.nbytes_per_image):
            acts = self._activations_on_disk(split, data, image_size, batch_size, copies, seed, key)
            return acts, acts.reused
        with Progress("activations of the frozen bottom", images) as progress:
            batch_size = pass_batch(batch_size)
            train_acts, val_acts, _, _ = compute_both(split, data.train.dataset(image_size, batch_size),
                                                       data.val.dataset(image_size, batch_size), copies, progress)
        acts = CutActivations(train_acts, val_acts, train_labels, val_labels)
        self._put(key, acts)
        return acts, False

    def _features_and_activations_on_disk(self, split, data, train_images, val_images, copies, seed, key,
                                          progress):
        """One pass: the pooled features (returned, kept in memory) and the cut's activations (to disk)."""
        n, name = len(data.train), _cut_name(_cut_key(key, split))
        orders = _orders(seed, copies, n)
        train, val = [[] for _ in range(copies)], []
        fns = [split.plain] + [split.augmented] * (copies - 1)
        with progress:
            write(self.cache_dir, name, [
                (train_images, n, [(f"train{i}", fn, orders[i], train[i].append) for i, fn in enumerate(fns)]),
                (val_images, len(data.val), [("val", split.plain, None, val.append)])], progress)
        log.info(f"activations at the cut ({split.describe()}) written to {os.path.join(self.cache_dir, name)}: "
                 f"they do not fit the memory budget ({self.memory_budget / 1024**2:.0f} MB for features and "
                 "activations, half of TFL_MEMORY_MB)")
        return [np.concatenate(t) for t in train], np.concatenate(val)

    def _activations_on_disk(self, split, data, image_size, batch_size, copies, seed, key) -> CutActivations:
        """Activations too big for the memory budget: written to `cache_dir` once, then streamed."""
        n, name = len(data.train), _cut_name(key)
        folder = os.path.join(self.cache_dir, name)
        orders = _orders(seed, copies, n)
        reused = complete(folder, name)
        if not reused:
            fns = [split.bottom] + [(lambda x: split.augmented(x)[0])] * (copies - 1)
            batch_size = pass_batch(batch_size)
            train_images = data.train.dataset(image_size, batch_size)
            with Progress("activations of the frozen bottom", copies * n + len(data.val)) as progress:
                write(self.cache_dir, name, [
                    (train_images, n, [(f"train{i}", fn, orders[i]) for i, fn in enumerate(fns)]),
                    (data.val.dataset(image_size, batch_size), len(data.val), [("val", split.bottom, None)])],
                      progress)
        if not reused:
            log.info(f"activations at the cut ({split.describe()}) written to {folder}: they do not fit the memory "
                     f"budget ({self.memory_budget / 1024**2:.0f} MB for features and activations, "
                     "half of TFL_MEMORY_MB)")

        def arrays(part):
            files = [f"{part}.npy"] if split.single else [f"{part}.{j}.npy" for j in range(len(split.shapes))]
            return [np.load(os.path.join(folder, f), mmap_mode="r") for f in files]

        return CutActivations([arrays(f"train{i}") for i in range(copies)], arrays("val"),
                              np.asarray(data.train.labels, np.int32), np.asarray(data.val.labels, np.int32),
                              folder=folder, orders=orders, reused=reused)


def _orders(seed: int, copies: int, n: int) -> list:
    """Each copy's rows in a seeded order of their own: read in file order, they are already shuffled."""
    return [np.random.default_rng([seed, 7, i]).permutation(n) for i in range(copies)]


def _cut_name(cut_key: str) -> str:
    """The folder (under the cache folder) of the activations of `cut_key` on disk."""
    return _feature_files.CUT_PREFIX + cut_key.replace("/", "-")


def _cut_key(features_key: str, split: BottomSplit) -> str:
    return f"{features_key}/cut{split.first}"


def _batched_calls(fns, dataset, progress=None) -> list:
    """Each function's outputs over `dataset`, concatenated: one pass, the images decoded once."""
    out = [[] for _ in fns]
    for per_fn in calls(fns, dataset, progress):
        for parts, o in zip(out, per_fn):
            parts.append(np.asarray(o))
    return [np.concatenate(parts, axis=0) for parts in out]
