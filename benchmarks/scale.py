"""Cost against data size: `tfl train` on 1x, 4x and 16x copies of one dataset.

For each size K, a temporary dataset holds every train and validation file of
DATA K times, under K distinct names (copies: tfl counts a file that links
reach twice once). tfl's trainer runs on it in a fresh process (data loading and its
checks, both stages, no HTML report; small image size and few epochs, so the
largest size takes minutes, not hours), and the script prints the training
time (the `fit` call: without Python's and TensorFlow's start-up, which do
not grow with the data), time per training image and the process's peak
resident memory (RSS) per size, then:

- `time per image, 16x / 1x: X` (the issue asks for <= 1.2: time grows at
  most linearly with the data);
- `peak RSS, 16x / 1x: X` (the issue asks for < 1.5: memory stays bounded).

Features beyond the memory budget (`TFL_MEMORY_MB`, `--memory-mb`)
go to the run folder's `features/` and are streamed from there.

Usage:
    python benchmarks/scale.py                        # hymenoptera, 1x 4x 16x, 96 px
    python benchmarks/scale.py --sizes 1 4 --image-size 128 --memory-mb 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_common.setup()

# Trains in a fresh process as `tfl train` does (data loading and checks, both stages; no HTML report),
# then reports the seconds that took and the process's peak RSS (with any helper process it started).
_RUNNER = """
import json, resource, sys, time
from tfl.config import TrainConfig
from tfl.training.trainer import Trainer
data, out, size, epochs, fine_tune_epochs = sys.argv[1:]
cfg = TrainConfig()
cfg.data.source, cfg.model.backbone, cfg.model.image_size = data, "mobilenet_025", int(size)
cfg.stage1.epochs, cfg.stage2.epochs, cfg.seed = int(epochs), int(fine_tune_epochs), 42
t = time.perf_counter()
Trainer(cfg, out, verbose=0, report=False).fit()
seconds = time.perf_counter() - t
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print("RESULT " + json.dumps({"train_seconds": seconds, "peak_rss_kb": peak}), file=sys.stderr)
"""


def replicate(data_dir: str, out: str, k: int) -> int:
    """`out/<split>/<class>/c<i>_<name>` copies for i < k; returns the number of training images.

    Copies, not links: tfl counts a file reached twice through links once.
    """
    n_train = 0
    for split in ("train", "val"):
        for cls in sorted(os.listdir(os.path.join(data_dir, split))):
            src = os.path.join(data_dir, split, cls)
            if not os.path.isdir(src):
                continue
            dst = os.path.join(out, split, cls)
            os.makedirs(dst)
            for name in sorted(os.listdir(src)):
                for i in range(k):
                    shutil.copyfile(os.path.join(src, name), os.path.join(dst, f"c{i}_{name}"))
                n_train += k if split == "train" else 0
    return n_train


def train(data: str, out: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_common.REPO, os.environ.get("PYTHONPATH")) if p)}
    if args.memory_mb is not None:
        env["TFL_MEMORY_MB"] = str(args.memory_mb)
    cmd = [sys.executable, "-c", _RUNNER, f"folder:{data}", out, str(args.image_size), str(args.epochs),
           str(args.fine_tune_epochs)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=_common.REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"training failed on {data}:\n{proc.stderr[-3000:]}")
    result = json.loads(next(line for line in proc.stderr.splitlines() if line.startswith("RESULT "))[7:])
    on_disk = os.path.isdir(os.path.join(out, "features")) and bool(os.listdir(os.path.join(out, "features")))
    return {"seconds": result["train_seconds"], "wall": wall, "peak_rss_mb": result["peak_rss_kb"] / 1024,
            "features_on_disk": on_disk}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(_common.SHARED, "datasets", "hymenoptera_data"))
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--fine-tune-epochs", type=int, default=2)
    p.add_argument("--memory-mb", type=float, default=None,
                   help="TFL_MEMORY_MB for the runs (default: tfl's budget)")
    args = p.parse_args(argv)

    print(f"machine: {_common.machine()}", flush=True)
    data_dir = _common.folder_path(args.data)
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="tfl-scale-") as tmp:
        for k in args.sizes:
            data = os.path.join(tmp, f"x{k}")
            n = replicate(data_dir, data, k)
            r = train(data, os.path.join(tmp, f"run{k}"), args)
            results[k] = {**r, "images": n}
            rows.append([f"{k}x", n, r["wall"], r["seconds"], 1000 * r["seconds"] / n, r["peak_rss_mb"],
                         "yes" if r["features_on_disk"] else "no"])
            print(f"  {k}x: {n} training images, {r['seconds']:.1f} s training, peak RSS {r['peak_rss_mb']:.0f} MB",
                  flush=True)
    print()
    print(f"{os.path.basename(os.path.normpath(data_dir))} x K, mobilenet_025 at {args.image_size} px, "
          f"{args.epochs} + {args.fine_tune_epochs} epochs, one process per size")
    print(_common.table(["size", "train images", "process wall s", "training s", "training ms per image",
                         "peak RSS MB", "features on disk"], rows))
    lo, hi = min(results), max(results)
    per_image = {k: v["seconds"] / v["images"] for k, v in results.items()}
    print(f"time per image, {hi}x / {lo}x: {per_image[hi] / per_image[lo]:.2f}")
    print(f"peak RSS, {hi}x / {lo}x: {results[hi]['peak_rss_mb'] / results[lo]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
