"""Loading `tfds:NAME[/CONFIG]` sources through tensorflow_datasets."""

from __future__ import annotations

from tfl.config import DataConfig
from tfl.errors import UsageError


def load(spec: str, config: DataConfig):
    """Loads a prepared (or downloadable) tfds dataset as an `ImageData`."""
    import tensorflow_datasets as tfds

    from tfl.data.loading import ImageData, Split
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
            raise UsageError(f"tfds:{name}: bad split '{spec}' ({str(e).splitlines()[0]}); splits: {', '.join(splits)}") from None
        # Counting labels must not decode every image.
        labels_only = builder.as_dataset(split=spec, shuffle_files=False,
                                         decoders={image_key: tfds.decode.SkipDecoding()})
        batches = labels_only.map(lambda ex: ex[label_key]).batch(4096).as_numpy_iterator()
        labels = [int(v) for batch in batches for v in batch]
        return Split(spec, labels, tfds_dataset=ds)

    return ImageData(list(label_feature.names), split(train_spec), split(val_spec), source=f"tfds:{name}")
