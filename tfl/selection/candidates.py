"""Which backbones a pick tries, whether each can be tried here, and the images it scores them on."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np

from tfl.errors import UsageError
from tfl.models import backbones

# Strong, efficient backbones, smallest first: four MobileNets whose ImageNet weights are easy to have
# (the two smallest ship with tfl), then the newer small families and one bigger modern network.
DEFAULT_CANDIDATES = ("mobilenet_025", "mobilenet_v2_035", "mobilenet_075", "mobilenet_v2", "mobilenet_v3_large",
                      "efficientnet_v2_b0", "convnext_tiny")
# A larger dataset is scored on a class-balanced subsample of this many training images (and half as
# many validation images): the ranking needs hundreds of images per class, not tens of thousands.
MAX_TRAIN_IMAGES = 2000


def resolve(candidates=None, family: typing.Optional[str] = None) -> typing.List[str]:
    """The candidates' registry names, cheapest (fewest parameters) first.

    Args:
        candidates: names (a list, or one comma-separated string); `None`:
            `DEFAULT_CANDIDATES` (or every backbone of `family`).
        family: every registered backbone of this family (`tfl backbones`
            shows the families).

    Raises:
        UsageError: an unknown name or family, or both given.
    """
    if candidates and family:
        raise UsageError("--candidates and --family: give one of them")
    if family:
        names = [s.name for s in backbones.list_backbones() if s.family == family]
        if not names:
            families = sorted({s.family for s in backbones.list_backbones()})
            raise UsageError(f"--family {family}: no such family; use one of {', '.join(families)}")
    elif candidates:
        if isinstance(candidates, str):
            candidates = candidates.split(",")
        names = []
        for text in candidates:
            if not str(text).strip():
                continue
            try:
                name = backbones.get_backbone(str(text).strip()).name
            except UsageError as e:
                raise UsageError(f"--candidates: {e}") from None
            if name not in names:
                names.append(name)
        if not names:
            raise UsageError("--candidates is empty: give backbone names such as mobilenet_v2,mobilenet_075")
    else:
        names = list(DEFAULT_CANDIDATES)
    return sorted(names, key=lambda n: (backbones.stats(n).get("params") or float("inf"), names.index(n)))


def weights_missing(name: str, image_size: int) -> typing.Optional[str]:
    """Why ImageNet weights for `name` cannot be had here, or None (a local file, or a network to fetch it).

    Examples:
        >>> weights_missing("efficientnet_v2_b0", 224)  # offline, nothing cached
        'no ImageNet weights cached and no network (storage.googleapis.com is unreachable (...))'
    """
    if backbones.imagenet_weights_path(name, image_size) is not None:
        return None
    from tfl._network import unreachable

    reason = unreachable()
    return None if reason is None else f"no ImageNet weights cached and no network ({reason})"


def _balanced(labels, limit: int, seed: int) -> typing.List[int]:
    """Indices of at most `limit` samples, as equal per class as the classes allow, in their original order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: typing.List[int] = []
    while len(chosen) < limit and any(pools):
        for pool in pools:  # one per class per round: small classes keep all theirs
            if pool and len(chosen) < limit:
                chosen.append(int(pool.pop()))
    return sorted(chosen)


def _take(split, indices):
    from tfl.data.loading import Split

    if split.paths is not None:
        return Split(split.name, [split.labels[i] for i in indices], [split.paths[i] for i in indices])
    import tensorflow as tf

    keep = tf.constant(indices, tf.int64)
    ds = split.tfds_dataset.enumerate().filter(lambda i, xy: tf.reduce_any(tf.equal(i, keep))).map(lambda i, xy: xy)
    return Split(split.name, [split.labels[i] for i in indices], tfds_dataset=ds)


def subsample(data, max_train: int = MAX_TRAIN_IMAGES, seed: int = 42):
    """`data` itself when it is small; else a deterministic class-balanced subsample of both splits.

    At most `max_train` training and `max_train // 2` validation images, the
    same ones for every candidate (and every run with the same seed).

    Returns:
        `(data or its subsample, True when subsampled)`.
    """
    max_val = max(1, max_train // 2)
    if len(data.train) <= max_train and len(data.val) <= max_val:
        return data, False
    train, val = data.train, data.val
    if len(train) > max_train:
        train = _take(train, _balanced(train.labels, max_train, seed))
    if len(val) > max_val:
        val = _take(val, _balanced(val.labels, max_val, seed + 1))
    return dataclasses.replace(data, train=train, val=val), True
