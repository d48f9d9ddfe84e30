"""Two-stage fine-tuning: tfl against the Keras guide recipe, same data, same epochs, one process.

Both fine-tune the same backbone (`--backbone`, default MobileNet 0.25; ImageNet weights) at 224 px:
tfl with its defaults (20 stage-1 epochs on cached features of 8 copies of the training set, 10
stage-2 epochs at the depth `--unfreeze auto` decides), the baseline as the Keras transfer-learning
guide writes it (`benchmarks/keras_guide.py`). Prints a table, then as its last
lines both validation accuracies and `ratio: X` (baseline wall time / tfl
wall time).

Usage:
    python benchmarks/two_stage_vs_keras_guide.py --data ../shared/datasets/hymenoptera_data
    python benchmarks/two_stage_vs_keras_guide.py --data ../shared/datasets/trashnet_subset --repeats 2
    python benchmarks/two_stage_vs_keras_guide.py --backbone mobilenet_v2 --data ../shared/datasets/intel_scenes_subset
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_common.setup()


def run_tfl(data_dir, args, out):
    import tfl
    from tfl.serving.evaluation import evaluate

    with _common.Timer() as t:
        result = tfl.fine_tune(data=_common.folder_source(data_dir), backbone=args.backbone,
                               image_size=args.image_size, epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                               batch_size=args.batch_size, seed=args.seed, mixed_precision=args.mixed_precision or None,
                               jit_compile=args.xla or None, out=out, overwrite=True, verbose=0)
    accuracy = evaluate(result.run_dir, split="val")["accuracy"]
    return {"name": "tfl", "seconds": t.wall, "cpu": t.cpu, "val_accuracy": accuracy,
            "note": f"kept stage {result.best_stage}"}


def run_baseline(data_dir, args):
    from keras_guide import keras_guide_recipe

    with _common.Timer() as t:
        r = keras_guide_recipe(_common.folder_path(data_dir), args.backbone, args.image_size, epochs=args.epochs,
                               fine_tune_epochs=args.fine_tune_epochs, batch_size=args.batch_size, seed=args.seed)
    # What the guide's user ends with: the model after the last epoch of stage 2.
    return {"name": "keras guide", "seconds": t.wall, "cpu": t.cpu, "val_accuracy": r["stage2"],
            "note": f"best epoch of stage 1 {r['stage1_best']:.4f}, of stage 2 {r['stage2_best']:.4f}"}


def main(argv=None):
    from tfl.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(_common.SHARED, "datasets", "hymenoptera_data"),
                   help="dataset folder with train/<class>/ and val/<class>/")
    p.add_argument("--backbone", default="mobilenet_025", help="a backbone with ImageNet weights (tfl backbones)")
    p.add_argument("--image-size", type=int, default=224)
    defaults = TrainConfig()
    p.add_argument("--epochs", type=int, default=defaults.stage1.epochs, help="stage 1 epochs of both (tfl's default)")
    p.add_argument("--fine-tune-epochs", type=int, default=defaults.stage2.epochs,
                   help="stage 2 epochs of both (tfl's default)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=1, help="alternate baseline and tfl this many times")
    p.add_argument("--mixed-precision", action="store_true", help="tfl with mixed float16")
    p.add_argument("--xla", action="store_true", help="tfl with XLA (jit_compile)")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(_common.folder_path(args.data), "train")):
        p.error(f"--data {args.data}: expected a folder with train/<class>/ and val/<class>/ images")

    # TensorFlow and Keras are imported before the clocks start: both recipes need them.
    print(f"machine: {_common.machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfl-bench-") as tmp:
        for i in range(args.repeats):
            for side in ("baseline", "tfl"):
                _common.reset_keras(args.seed)
                load = _common.load_average()
                if side == "baseline":
                    r = run_baseline(args.data, args)
                else:
                    r = run_tfl(args.data, args, os.path.join(tmp, f"run{i}"))
                r["load"] = load
                rows.append(r)
                print(f"  {r['name']}: {r['seconds']:.1f}s wall, {r['cpu']:.1f}s CPU, "
                      f"val_accuracy {r['val_accuracy']:.4f} ({r['note']})", flush=True)

    def mean(name, key):
        vals = [r[key] for r in rows if r["name"] == name]
        return sum(vals) / len(vals)

    print()
    print(f"{os.path.basename(os.path.normpath(_common.folder_path(args.data)))}, {args.backbone} ImageNet, "
          f"{args.image_size} px, {args.epochs}+{args.fine_tune_epochs} epochs, batch {args.batch_size}"
          + (", mixed precision" if args.mixed_precision else "") + (", XLA" if args.xla else ""))
    print(_common.table(["recipe", "wall s", "CPU s", "val accuracy", "load avg at start", "notes"],
                        [[r["name"], r["seconds"], r["cpu"], r["val_accuracy"], f"{r['load']:.1f}", r["note"]]
                         for r in rows]))
    base_acc, tfl_acc = mean("keras guide", "val_accuracy"), mean("tfl", "val_accuracy")
    print(f"cpu ratio: {mean('keras guide', 'cpu') / mean('tfl', 'cpu'):.2f}")
    print(f"baseline (keras guide) val_accuracy: {base_acc:.4f}")
    print(f"tfl val_accuracy: {tfl_acc:.4f}")
    print(f"ratio: {mean('keras guide', 'seconds') / mean('tfl', 'seconds'):.2f}")


if __name__ == "__main__":
    main()
