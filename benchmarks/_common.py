"""What the benchmark scripts share: setup, the plain-Keras baseline, timing and tables.

Import this module before anything imports Keras: `setup()` points
KERAS_HOME at a temporary copy of ../shared/keras-weights when the real
MobileNet weights are not already in the Keras cache, and puts the
repository on `sys.path` so that the scripts run from a checkout.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.environ.get("TFL_SHARED", os.path.join(REPO, "..", "shared")))
WEIGHTS_FILE = "mobilenet_2_5_224_tf_no_top.h5"


def setup() -> None:
    """Makes `import tfl` and the offline MobileNet 0.25 weights work (call before importing Keras)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    home = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
    shared_weights = os.path.join(SHARED, "keras-weights")
    if not os.path.exists(os.path.join(home, "models", WEIGHTS_FILE)) and os.path.isdir(shared_weights):
        # Keras writes keras.json into KERAS_HOME and ../shared is read-only: use a copy.
        copy = tempfile.mkdtemp(prefix="tfl-bench-keras-home-")
        shutil.copytree(shared_weights, copy, dirs_exist_ok=True)
        os.environ["KERAS_HOME"] = copy


def folder_source(path: str) -> str:
    """`folder:PATH` for a dataset folder given with or without the prefix."""
    return path if path.startswith(("folder:", "tfds:")) else f"folder:{path}"


def folder_path(source: str) -> str:
    return source.split(":", 1)[1] if source.startswith("folder:") else source


# -- the machine --------------------------------------------------------------------------------
def machine() -> str:
    """One line: CPU model, cores, load average, TensorFlow and Keras versions."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    load = "/".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {os.cpu_count()} cores, load average {load} (1/5/15 min); "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}")


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# -- timing -------------------------------------------------------------------------------------
class Timer:
    """Wall and process CPU seconds of a `with` block.

    Examples:
        >>> with Timer() as t:
        ...     work()
        >>> t.wall, t.cpu
    """

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        return False


def reset_keras(seed: int = 42) -> None:
    """Frees the previous models and restores the float32 policy between runs in one process."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


# -- output -------------------------------------------------------------------------------------
def table(headers, rows) -> str:
    """A Markdown table (pastes into the README as is)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


# -- the baseline's pieces, for a Keras Tuner HyperModel --------------------------------------------
# The two-stage baseline itself is `keras_guide.keras_guide_recipe`; these are the same
# steps split up, so that a plain Keras Tuner search can build and fit them per trial.
def guide_datasets(data_dir: str, image_size: int, batch_size: int = 32, seed: int = 42):
    """(train, val, class_names): `image_dataset_from_directory`, cached and prefetched as the guide does."""
    import keras

    size = (image_size, image_size)
    train_ds = keras.utils.image_dataset_from_directory(
        os.path.join(data_dir, "train"), image_size=size, batch_size=batch_size, seed=seed, verbose=False)
    val_ds = keras.utils.image_dataset_from_directory(
        os.path.join(data_dir, "val"), image_size=size, batch_size=batch_size, shuffle=False,
        class_names=train_ds.class_names, verbose=False)
    return train_ds.cache().prefetch(2), val_ds.cache().prefetch(2), train_ds.class_names


def guide_model(num_classes: int, image_size: int, dropout: float = 0.2, seed: int = 42):
    """(model, base) as `keras_guide_recipe` builds them: flip and rotation, the backbone's
    scaling and the frozen MobileNet 0.25 base (called with `training=False`) in the model."""
    import keras

    from tfl.models import backbones
    from tfl.models import classifier as model_lib

    base = backbones.build_backbone("mobilenet_025", image_size, "imagenet")
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.RandomFlip("horizontal", seed=seed)(inputs)
    x = keras.layers.RandomRotation(0.1, seed=seed)(x)
    x = model_lib.preprocess_layer("mobilenet_025")(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x)), base


def guide_compile(model, lr: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
