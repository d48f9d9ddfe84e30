"""`tfds:NAME[/CONFIG]` sources: a prepared (or downloadable) tensorflow-datasets dataset as an `ImageData`."""

from __future__ import annotations

import typing

from tfl.config import DataConfig
from tfl.data.splits import ImageData, Split
from tfl.errors import TflError, UsageError


def load_tfds(spec: str, config: DataConfig, multi_label: typing.Optional[bool] = None) -> "ImageData":
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
