"""tensorflow-datasets builders shipped with `tfl` (offline, no download).

Importing this package imports tensorflow_datasets and registers the local
builders (currently ``tfl_shapes``), so that ``tfds.builder(name)`` and
``tfds.load(name, data_dir=..., download=False)`` find them once prepared.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from tfl.data.datasets import synthetic_shapes  # noqa: F401  (registers builders)
from tfl.data.datasets.synthetic_shapes import CLASS_NAMES, TflShapes

# Registered tfds names of the builders this package owns.
LOCAL_BUILDERS = ("tfl_shapes",)

__all__ = [
    "CLASS_NAMES",
    "LOCAL_BUILDERS",
    "TflShapes",
    "is_local_builder",
    "prepare",
]


def _base_name(name: str) -> str:
    """'tfl_shapes/small:1.0.0' -> 'tfl_shapes'."""
    return name.split(":", 1)[0].split("/", 1)[0].strip()


def is_local_builder(name: str) -> bool:
    """True if `name` (optionally with '/config' and ':version') is ours."""
    return _base_name(name) in LOCAL_BUILDERS


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> None:
    """Generates and writes a local dataset into `data_dir` if not already there.

    Does nothing if the dataset is already prepared. Never downloads anything.
    Raises ValueError for names that are not local builders of this package.
    """
    if not is_local_builder(name):
        raise ValueError(
            f"{name!r} is not a local tfl dataset builder "
            f"(known: {', '.join(LOCAL_BUILDERS)})."
        )
    builder = tfds.builder(
        name, data_dir=os.fspath(data_dir) if data_dir is not None else None
    )
    if not builder.is_prepared():
        builder.download_and_prepare()
