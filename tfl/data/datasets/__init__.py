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
    import contextlib
    import io
    import logging
    import time

    from tfl._logging import log

    absl = logging.getLogger("absl")
    level = absl.level
    # tfds prints "Downloading and preparing dataset Unknown size ..." and absl warns that the new folder
    # has no dataset_info.json: both wrong for data generated on the spot, so they are kept off the terminal.
    absl.setLevel(logging.ERROR)
    t = time.time()
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir) if data_dir is not None else None)
        if builder.is_prepared():
            return
        tfds.disable_progress_bar()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare()
        finally:
            tfds.enable_progress_bar()
    finally:
        absl.setLevel(level)
    log.info(f"tfds:{name}: generated on this machine (no download) in {time.time() - t:.1f}s "
             f"into {builder.data_dir}")
