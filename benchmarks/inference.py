"""Inference: tfl's prediction paths against Keras `model.predict`, on the same 512 image files.

Rows (images/s, all in one process but the last):

- `model.predict` on a tf.data pipeline over the files (tfl's decode and
  resize mapped with AUTOTUNE, prefetch AUTOTUNE: the plain Keras way), the
  baseline; and on the images already decoded in a NumPy array;
- on that array, tfl's compiled TensorFlow call and the LiteRT engine;
- `tfl.Predictor(run, engine=...).predict(files)` with each engine, which
  also checks, decodes and resizes the files;
- the same for the exported model (`tfl.export(..., tflite=["float32"])`):
  `keras` calls the SavedModel's `predict_images` signature, `litert` the
  exported `model_float32.tflite`;
- the `tfl predict RUN FILES...` command line in a fresh process (start-up,
  model loading and all).

Other programs may share the machine, so the rows take turns: each round
calls every row once, and a row's figure is its best later round (the first
round traces the models and makes the run's LiteRT model). Prints a table,
then per model tfl's best path over `model.predict` on the files, and
`ratio: X`, the smaller of the two (the issue asks for >= 1.5).

Usage:
    python benchmarks/inference.py                  # trains a 1-epoch run first (about a minute)
    python benchmarks/inference.py --run runs/ants  # uses a finished run
"""

from __future__ import annotations

import argparse
import functools
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a finished tfl run folder (default: train a quick one)")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4, help="calls per row: the first, and the best of the others")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import tfl
    from tfl.data.loading import Split, decode_image, resize_image, with_options
    from tfl.serving import engines
    from tfl.serving.evaluation import predict_probabilities
    from tfl.serving.prediction import Predictor, load_model

    print(f"machine: {_common.machine()}", flush=True)
    files = image_files(args.images)
    n, bs = len(files), args.batch_size
    with tempfile.TemporaryDirectory(prefix="tfl-bench-") as tmp:
        run = args.run or quick_run(os.path.join(tmp, "run"))
        model = load_model(run)
        size = int(model.input_shape[1])
        export = tfl.export(run, os.path.join(tmp, "exports"), verify_images=4, tflite=["float32"])
        export_dir = os.path.dirname(export.path)

        def keras_files():
            ds = tf.data.Dataset.from_tensor_slices(files).map(
                lambda p: resize_image(decode_image(tf.io.read_file(p)), size), num_parallel_calls=tf.data.AUTOTUNE)
            return model.predict(ds.batch(bs).prefetch(tf.data.AUTOTUNE), verbose=0)

        split = Split("bench", [0] * n, files)
        array = np.concatenate([x.numpy() for x, _ in split.dataset(size, bs, cache=False)])
        array_ds = with_options(tf.data.Dataset.from_tensor_slices((array, np.zeros(n, np.int32))).batch(bs))
        with open(os.path.join(export.path, "model_float32.tflite"), "rb") as f:
            lite = engines.LiteModel(f.read())

        def lite_array():
            return [lite(array[i:i + bs]) for i in range(0, n, bs)]

        predictors = {(where, engine): Predictor(path, batch_size=bs, engine=engine)
                      for where, path in (("run", run), ("export", export_dir)) for engine in ("keras", "litert")}
        rows = [
            ("keras model.predict, files (tf.data AUTOTUNE)", keras_files, "the baseline: decode included"),
            ("keras model.predict, decoded array", lambda: model.predict(array, batch_size=bs, verbose=0),
             "compute only"),
            ("tfl compiled TensorFlow call, decoded array", lambda: predict_probabilities(model, array_ds),
             "compute only"),
            ("LiteRT (XNNPACK), decoded array", lite_array, "compute only"),
        ] + [(f"tfl Predictor({where}, engine={engine!r}).predict(files)", functools.partial(predictor.predict, files),
              "checks + decode included") for (where, engine), predictor in predictors.items()]
        times = {name: [] for name, _, _ in rows}
        for r in range(max(2, args.rounds)):
            for name, fn, _ in rows:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            print(f"  round {r + 1}: " + ", ".join(f"{n / times[name][-1]:.0f}" for name, _, _ in rows), flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tfl", "predict", run, *files, "--batch-size", str(bs)],
                              capture_output=True, text=True, cwd=_common.REPO)
        if proc.returncode != 0:
            raise SystemExit(f"tfl predict failed:\n{proc.stderr}")
        cli_seconds = time.perf_counter() - t
        keras.backend.clear_session()

    table = [[name, n / times[name][0], n / min(times[name][1:]), note] for name, _, note in rows]
    table.append(["tfl predict RUN FILES (command line, new process)", n / cli_seconds, "",
                  "start-up and model load included"])
    rate = {name: n / min(times[name][1:]) for name, _, _ in rows}
    baseline = rate[rows[0][0]]
    best = {where: max(rate[f"tfl Predictor({where}, engine={e!r}).predict(files)"] for e in ("keras", "litert"))
            for where in ("run", "export")}
    print()
    print(f"{n} images (hymenoptera + trashnet_subset files), {size} px, batch {bs}; later calls: best of "
          f"{max(1, args.rounds - 1)} rounds, the rows taking turns")
    print(_common.table(["path", "images/s, first call", "images/s, later calls", "notes"], table))
    print(f"compute only, LiteRT/TensorFlow: {rate[rows[3][0]] / rate[rows[2][0]]:.2f}")
    for where in ("run", "export"):
        print(f"ratio ({where}: tfl's best path over model.predict on the files): {best[where] / baseline:.2f}")
    print(f"ratio: {min(best.values()) / baseline:.2f}")


if __name__ == "__main__":
    main()
