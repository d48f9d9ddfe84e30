"""Data sources and the tf.data pipeline, on the real shared photos and a real tfds builder."""

import os
import shutil

import numpy as np
import pytest

from tfl.config import DataConfig
from tfl.data.loading import load_data
from tfl.errors import UsageError


def test_folder_with_train_and_val(hymenoptera):
    data = load_data(f"folder:{hymenoptera}")
    assert data.class_names == ["ants", "bees"]
    assert (len(data.train), len(data.val)) == (244, 153)
    assert data.class_counts() == [123, 121]
    assert not data.skipped


def test_pipeline_batches_are_float_rgb_of_the_input_size(hymenoptera):
    data = load_data(f"folder:{hymenoptera}")
    x, y = next(iter(data.val.dataset(96, 8)))
    assert x.shape == (8, 96, 96, 3) and x.dtype.name == "float32"
    assert y.dtype.name == "int32"
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 255.0 and float(np.max(x)) > 1.0


def test_shuffle_is_deterministic_with_a_seed(hymenoptera):
    data = load_data(f"folder:{hymenoptera}")
    order = [np.concatenate([y.numpy() for _, y in data.train.dataset(32, 64, shuffle=True, seed=s)])
             for s in (1, 1, 2)]
    assert np.array_equal(order[0], order[1])
    assert not np.array_equal(order[0], order[2])


def _small_copy(src, dst, per_class=6):
    for cls in ("ants", "bees"):
        os.makedirs(os.path.join(dst, cls))
        for name in sorted(os.listdir(os.path.join(src, "train", cls)))[:per_class]:
            shutil.copy(os.path.join(src, "train", cls, name), os.path.join(dst, cls, name))


def test_single_folder_gets_a_stratified_validation_hold_out(hymenoptera, tmp_path):
    _small_copy(hymenoptera, tmp_path / "photos", per_class=10)
    data = load_data(DataConfig(source=f"folder:{tmp_path / 'photos'}", val_fraction=0.2))
    assert (len(data.train), len(data.val)) == (16, 4)
    assert sorted(data.val.labels) == [0, 0, 1, 1]
    assert not set(data.train.paths) & set(data.val.paths)


def test_corrupt_files_are_skipped_and_reported_or_refused_with_strict(hymenoptera, tmp_path):
    root = tmp_path / "photos"
    _small_copy(hymenoptera, root)
    (root / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "bees" / "empty.jpg").write_bytes(b"")
    data = load_data(f"folder:{root}")
    skipped = {os.path.basename(p): reason for p, reason in data.skipped}
    assert set(skipped) == {"broken.jpg", "empty.jpg"}
    assert skipped["empty.jpg"] == "empty file"
    assert len(data.train) + len(data.val) == 12
    # The pipeline then runs over the good files without error.
    assert sum(int(y.shape[0]) for _, y in data.train.dataset(64, 4)) == len(data.train)
    with pytest.raises(UsageError, match="strict"):
        load_data(DataConfig(source=f"folder:{root}", strict=True))


def test_bad_sources_give_one_line(tmp_path):
    with pytest.raises(UsageError, match="folder:PATH, csv:PATH or tfds:NAME"):
        load_data("photos")
    with pytest.raises(UsageError, match="no such folder"):
        load_data(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(UsageError, match="only one class"):
        load_data(f"folder:{tmp_path / 'one'}")


def test_tfds_dataset_is_loaded_by_name_from_a_prepared_data_dir(tmp_path):
    import tensorflow_datasets as tfds

    import tfl.data.datasets

    tfl.data.datasets.prepare("tfl_shapes/small", str(tmp_path))
    assert tfds.builder("tfl_shapes/small", data_dir=str(tmp_path)).is_prepared()
    data = load_data(DataConfig(source="tfds:tfl_shapes/small", data_dir=str(tmp_path), download=False))
    assert data.class_names == ["circle", "square", "triangle", "star"]
    assert (len(data.train), len(data.val)) == (160, 48)
    x, y = next(iter(data.train.dataset(32, 16, shuffle=True, seed=0)))
    assert x.shape == (16, 32, 32, 3)
    sliced = load_data(DataConfig(source="tfds:tfl_shapes/small", data_dir=str(tmp_path), download=False,
                                  train_split="train[:50%]"))
    assert len(sliced.train) == 80


def test_unprepared_tfds_dataset_without_download_fails_fast(tmp_path):
    with pytest.raises(UsageError, match="not prepared"):
        load_data(DataConfig(source="tfds:mnist", data_dir=str(tmp_path), download=False))
