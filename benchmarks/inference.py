"""Inference: tfl's prediction paths against Keras `model.predict`, on the same 512 image files.

Rows (images/s, in one process unless said):

- `model.predict` on a tf.data pipeline over the files (decode and resize
  mapped with AUTOTUNE, prefetch AUTOTUNE: the plain Keras way), and on the
  images already decoded in a NumPy array;
- tfl's compiled call (`tfl.serving.evaluation.predict_probabilities`) on the same
  array, and `tfl.Predictor(run).predict(files)`, which also checks and
  decodes the files;
- the exported SavedModel (`tfl.export`) through `Predictor(export)`, which
  feeds its `serving_default` signature the files' bytes, as a server would;
- the `tfl predict RUN FILES...` command line in a fresh process (start-up,
  model loading and all).

Prints a table (first call, which traces the model, and the best later
call), then `ratio: X` (tfl Predictor images/s over `model.predict` on the
files, later calls).

Usage:
    python benchmarks/inference.py                  # trains a 1-epoch run first (about a minute)
    python benchmarks/inference.py --run runs/ants  # uses a finished run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_common.setup()


def image_files(n):
    """The first `n` images of hymenoptera (train, val), then trashnet_subset, in a stable order."""
    from tfl.data import images as _images

    files = []
    for name in ("hymenoptera_data", "trashnet_subset"):
        for split in ("train", "val"):
            files += _images.list_files(os.path.join(_common.SHARED, "datasets", name, split))
    files = [f for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    if len(files) < n:
        files = (files * (n // len(files) + 1))
    return files[:n]


def quick_run(out):
    from tfl.config import TrainConfig
    from tfl.training.trainer import Trainer

    cfg = TrainConfig()
    cfg.data.source = f"folder:{os.path.join(_common.SHARED, 'datasets', 'hymenoptera_data')}"
    cfg.model.image_size, cfg.model.augment = 224, False
    cfg.stage1.epochs, cfg.stage2.epochs = 1, 0
    Trainer(cfg, out, verbose=0, report=False).fit()
    return out


def timed(fn, repeats=2):
    """(seconds of the first call, best seconds of the later ones): the first traces the model."""
    times = []
    for _ in range(max(2, repeats)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times[1:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a finished tfl run folder (default: train a quick one)")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="calls per row: the first, and the best of the others")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import tfl
    from tfl.data.loading import Split, decode_image, resize_image, with_options
    from tfl.serving.evaluation import predict_probabilities
    from tfl.serving.prediction import Predictor, load_model

    print(f"machine: {_common.machine()}", flush=True)
    files = image_files(args.images)
    n, bs = len(files), args.batch_size
    with tempfile.TemporaryDirectory(prefix="tfl-bench-") as tmp:
        run = args.run or quick_run(os.path.join(tmp, "run"))
        model = load_model(run)
        size = int(model.input_shape[1])

        def keras_files():
            ds = tf.data.Dataset.from_tensor_slices(files).map(
                lambda p: resize_image(decode_image(tf.io.read_file(p)), size), num_parallel_calls=tf.data.AUTOTUNE)
            return model.predict(ds.batch(bs).prefetch(tf.data.AUTOTUNE), verbose=0)

        split = Split("bench", [0] * n, files)
        array = np.concatenate([x.numpy() for x, _ in split.dataset(size, bs, cache=False)])
        array_ds = with_options(tf.data.Dataset.from_tensor_slices((array, np.zeros(n, np.int32))).batch(bs))
        predictor = Predictor(run, batch_size=bs)
        export = tfl.export(run, os.path.join(tmp, "exports"), verify_images=4)
        served = Predictor(os.path.dirname(export.path), batch_size=bs)

        rows = []

        def row(name, seconds, note=""):
            first, later = seconds if isinstance(seconds, tuple) else (seconds, None)
            rows.append([name, n / first, "" if later is None else n / later, note])
            later_text = f"{rows[-1][2]:.1f}" if later else "-"
            print(f"  {name}: {rows[-1][1]:.1f} images/s first call, {later_text} later", flush=True)

        row("keras model.predict, files (tf.data AUTOTUNE)", timed(keras_files, args.repeats), "decode included")
        row("keras model.predict, decoded array", timed(lambda: model.predict(array, batch_size=bs, verbose=0),
                                                        args.repeats), "compute only")
        row("tfl compiled call, decoded array", timed(lambda: predict_probabilities(model, array_ds), args.repeats),
            "compute only")
        row("tfl Predictor(run).predict(files)", timed(lambda: predictor.predict(files), args.repeats),
            "checks + decode included")
        row("exported SavedModel, Predictor(export)", timed(lambda: served.predict(files), args.repeats),
            "serving_default on bytes")
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tfl", "predict", run, *files, "--batch-size", str(bs)],
                              capture_output=True, text=True, cwd=_common.REPO)
        if proc.returncode != 0:
            raise SystemExit(f"tfl predict failed:\n{proc.stderr}")
        row("tfl predict (command line, new process)", time.perf_counter() - t, "start-up and model load included")
        keras.backend.clear_session()

    print()
    print(f"{n} images (hymenoptera + trashnet_subset files), mobilenet_025 {size} px, batch {bs}; "
          f"later calls: best of {max(1, args.repeats - 1)}")
    print(_common.table(["path", "images/s, first call", "images/s, later calls", "notes"], rows))
    print(f"compute only, tfl/keras, later calls: {rows[2][2] / rows[1][2]:.2f}")
    print(f"savedmodel/keras files, later calls: {rows[4][2] / rows[0][2]:.2f}")
    print(f"ratio (first call): {rows[3][1] / rows[0][1]:.2f}")
    print(f"ratio: {rows[3][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()
