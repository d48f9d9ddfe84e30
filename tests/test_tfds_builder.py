"""Tests of the offline tfds builder `tfl_shapes` (tfl/datasets)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfl.data.datasets as tfl_datasets  # registers tfl_shapes
from tfl.data.datasets.synthetic_shapes import CLASS_NAMES

NAME = "tfl_shapes"
SIZE = 96
N_TRAIN = 320
N_VAL = 96


def _as_arrays(data_dir, split):
    ds = tfds.load(NAME, split=split, data_dir=str(data_dir), download=False,
                   as_supervised=True, shuffle_files=False)
    images, labels = [], []
    for image, label in tfds.as_numpy(ds):
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(labels)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds_data")
    tfl_datasets.prepare(NAME, d)
    return d


@pytest.fixture(scope="module")
def arrays(data_dir):
    return {s: _as_arrays(data_dir, s) for s in ("train", "validation")}


def test_registered_and_local():
    assert NAME in tfds.list_builders(with_community_datasets=False)
    assert tfl_datasets.is_local_builder(NAME)
    assert tfl_datasets.is_local_builder("tfl_shapes/small:1.0.0")
    assert not tfl_datasets.is_local_builder("mnist")
    assert not tfl_datasets.is_local_builder("cats_vs_dogs")
    with pytest.raises(ValueError):
        tfl_datasets.prepare("mnist", "/nonexistent")


def test_info(data_dir):
    builder = tfds.builder(NAME, data_dir=str(data_dir))
    assert builder.is_prepared()
    info = builder.info
    assert str(info.version) == "1.0.0"
    assert info.supervised_keys == ("image", "label")
    assert info.features["image"].shape == (SIZE, SIZE, 3)
    assert info.features["label"].names == list(CLASS_NAMES)
    assert info.features["label"].num_classes == len(CLASS_NAMES)
    assert info.splits["train"].num_examples == N_TRAIN
    assert info.splits["validation"].num_examples == N_VAL


def test_prepare_is_idempotent(data_dir):
    t0 = time.monotonic()
    tfl_datasets.prepare(NAME, data_dir)  # already there: no regeneration
    assert time.monotonic() - t0 < 5


def test_load_supervised(arrays):
    for split, n in (("train", N_TRAIN), ("validation", N_VAL)):
        x, y = arrays[split]
        assert x.dtype == np.uint8
        assert x.shape == (n, SIZE, SIZE, 3)
        assert y.shape == (n,)
        assert y.min() >= 0 and y.max() < len(CLASS_NAMES)
        # Every class present, roughly balanced.
        counts = np.bincount(y, minlength=len(CLASS_NAMES))
        assert counts.min() >= n // len(CLASS_NAMES) - 1
        # Images are not blank / constant.
        assert x.reshape(n, -1).std(axis=1).min() > 5


def test_split_slicing(data_dir):
    ds = tfds.load(NAME, split="train[:50%]", data_dir=str(data_dir),
                   download=False, as_supervised=True)
    n = sum(1 for _ in ds)
    assert n == N_TRAIN // 2
    ds = tfds.load(NAME, split="validation", data_dir=str(data_dir),
                   download=False)
    example = next(iter(ds))
    assert set(example) == {"image", "label"}
    assert example["image"].shape == (SIZE, SIZE, 3)


def test_deterministic(arrays, tmp_path):
    tfl_datasets.prepare(NAME, tmp_path)
    x2, y2 = _as_arrays(tmp_path, "validation")
    x1, y1 = arrays["validation"]
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(x1, x2)
    train2 = tfds.load(NAME, split="train[:4]", data_dir=str(tmp_path),
                       download=False, as_supervised=True, shuffle_files=False)
    for i, (img, label) in enumerate(tfds.as_numpy(train2)):
        np.testing.assert_array_equal(img, arrays["train"][0][i])
        assert label == arrays["train"][1][i]


def _orientation_features(x, ks=range(1, 9)):
    """Rotation-invariant edge-orientation harmonics, shape (n, len(ks)).

    Squares give strong 4-fold, triangles 3-fold, stars 5-fold and circles
    no dominant orientation symmetry in the strongest image gradients.
    """
    x = x.astype(np.float32)
    gx = x[:, 1:-1, 2:, :] - x[:, 1:-1, :-2, :]
    gy = x[:, 2:, 1:-1, :] - x[:, :-2, 1:-1, :]
    mag = np.hypot(gx, gy)
    c = mag.argmax(-1)[..., None]  # colour channel with the strongest edge
    gx = np.take_along_axis(gx, c, -1)[..., 0]
    gy = np.take_along_axis(gy, c, -1)[..., 0]
    mag = np.take_along_axis(mag, c, -1)[..., 0]
    thr = np.percentile(mag.reshape(len(x), -1), 90, axis=1)[:, None, None]
    w = np.where(mag >= thr, mag, 0.0)
    theta = np.arctan2(gy, gx)
    feats = [np.abs((w * np.exp(1j * k * theta)).sum((1, 2))) / w.sum((1, 2))
             for k in ks]
    return np.stack(feats, axis=1)


def test_learnable(arrays):
    """A nearest-centroid classifier on edge statistics clearly beats chance."""
    xt, yt = arrays["train"]
    xv, yv = arrays["validation"]
    ft, fv = _orientation_features(xt), _orientation_features(xv)
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    ft, fv = (ft - mu) / sd, (fv - mu) / sd
    n_cls = len(CLASS_NAMES)
    centroids = np.stack([ft[yt == c].mean(0) for c in range(n_cls)])
    pred = ((fv[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    acc = float((pred == yv).mean())
    assert acc > 2.0 / n_cls, acc  # chance is 1/n_cls
    # ... but raw mean colour alone does not identify the class.
    mt = xt.reshape(len(xt), -1, 3).mean(1)
    mv = xv.reshape(len(xv), -1, 3).mean(1)
    cm = np.stack([mt[yt == c].mean(0) for c in range(n_cls)])
    pred_c = ((mv[:, None, :] - cm[None]) ** 2).sum(-1).argmin(1)
    assert float((pred_c == yv).mean()) < 0.5


def test_not_prepared_fails_fast(tmp_path):
    """Loading without preparation raises quickly instead of downloading."""
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="could not find data"):
        tfds.load(NAME, data_dir=str(tmp_path), download=False)
    assert time.monotonic() - t0 < 10
