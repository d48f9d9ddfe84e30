"""What `ActivationStore` hands to training: pooled features and cut activations, in memory or streamed from disk."""

from __future__ import annotations

import numpy as np

# Shuffle buffer, in bytes, of features and activations streamed from disk.
_DISK_SHUFFLE_BYTES = 64 * 1024**2


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
        key: the digest of everything the features depend on (see `cache_key`).

    Examples:
        >>> cache = ActivationStore().features(model, data, 224, 32, copies=2)
        >>> cache.train[0].shape
        (244, 256)
    """

    def __init__(self, train, val, train_labels, val_labels, *, seed: int = 0, on_disk: bool = False,
                 folder=None, reused: bool = False, key: str = ""):
        self.train, self.val = list(train), val
        self.key = key
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
            ds = self._features(feats, self.train_labels)
            if shuffle:
                buffer = len(feats) if not self.on_disk else max(1024, _DISK_SHUFFLE_BYTES // (self.dim * 4))
                ds = ds.shuffle(min(len(feats), buffer), seed=seed + i, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            parts = ds if parts is None else parts.concatenate(ds)
        return with_options(parts.repeat().map(lambda x, y: (x, label_fn(y))).prefetch(2))

    def val_dataset(self, label_fn, batch_size: int):
        from tfl.data.loading import with_options

        ds = self._features(self.val, self.val_labels).batch(batch_size).map(lambda x, y: (x, label_fn(y)))
        if not self.on_disk:
            ds = ds.cache()
        return with_options(ds.prefetch(2))

    def _features(self, feats, labels):
        """(feature vector, label) elements, from memory or streamed from the .npy file."""
        import tensorflow as tf

        if not self.on_disk:
            return tf.data.Dataset.from_tensor_slices((np.asarray(feats), labels))
        return tf.data.Dataset.zip((_streamed(feats), tf.data.Dataset.from_tensor_slices(labels)))


class CutActivations:
    """Activations of the backbone's frozen bottom at a `BottomSplit`'s cut, per copy and for validation.

    In memory, or `.npy` files streamed from `folder` when `on_disk` (the rows
    of each training copy written in a seeded random order, `orders[i]`, so a
    bounded shuffle buffer still mixes the classes).

    Attributes:
        train: per copy, one array per cut tensor (memory maps when on disk:
            only their shapes and file offsets are read).
        val: one array per cut tensor.
        copies: number of training copies.
        on_disk: the arrays are files in `folder`.
    """

    def __init__(self, train, val, train_labels, val_labels, *, folder=None, orders=None, reused: bool = False):
        self.train, self.val = train, val
        self.train_labels, self.val_labels = train_labels, val_labels
        self.copies = len(train)
        self.on_disk, self.folder, self.orders, self.reused = folder is not None, folder, orders, reused

    @property
    def nbytes(self) -> int:
        if self.on_disk:
            return 0
        return sum(int(a.nbytes) for arrays in self.train for a in arrays) + sum(int(a.nbytes) for a in self.val)

    def datasets(self, label_fn, batch_size: int, seed: int):
        """(endless train batches, one copy per epoch; val batches) of cut activations."""
        from tfl.data.loading import with_options

        row_bytes = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in self.val)
        parts = None
        for i, arrays in enumerate(self.train):
            if self.on_disk:
                labels = np.empty_like(self.train_labels)
                labels[self.orders[i]] = self.train_labels  # row j of the pass was written at orders[i][j]
                buffer = min(len(labels), max(256, _DISK_SHUFFLE_BYTES // max(1, row_bytes)))
            else:
                labels, buffer = self.train_labels, len(self.train_labels)
            ds = self._elements(arrays, labels).shuffle(buffer, seed=seed + i, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            parts = ds if parts is None else parts.concatenate(ds)
        train_ds = with_options(parts.repeat().map(lambda x, y: (x, label_fn(y))).prefetch(2))
        val_ds = self._elements(self.val, self.val_labels).batch(batch_size).map(lambda x, y: (x, label_fn(y)))
        if not self.on_disk:
            val_ds = val_ds.cache()
        return train_ds, with_options(val_ds.prefetch(2))

    def _elements(self, arrays, labels):
        import tensorflow as tf

        if self.on_disk:
            arrays = [_streamed(a) for a in arrays]
        else:
            arrays = [tf.data.Dataset.from_tensor_slices(a) for a in arrays]
        x = arrays[0] if len(arrays) == 1 else tf.data.Dataset.zip(tuple(arrays))
        return tf.data.Dataset.zip((x, tf.data.Dataset.from_tensor_slices(labels)))


def _streamed(array):
    """The rows of a `.npy` memory map as a dataset read from its file (plain reads, in order)."""
    import tensorflow as tf

    shape = [int(d) for d in array.shape[1:]]
    dtype = tf.as_dtype(array.dtype.newbyteorder("="))
    records = tf.data.FixedLengthRecordDataset(array.filename, int(np.prod(shape)) * array.dtype.itemsize,
                                               header_bytes=array.offset, buffer_size=1 << 20)
    # A known length: Keras warns "Your input ran out of data" at the end of a pass of unknown length.
    records = records.apply(tf.data.experimental.assert_cardinality(int(array.shape[0])))
    return records.map(lambda r: tf.reshape(tf.io.decode_raw(r, dtype), shape))
