"""tfl's defaults against the Keras guide's recipe on every dataset x backbone, same epochs, one run.

For each shared dataset (train/ and val/ class folders) and each backbone with
real ImageNet weights, trains tfl with its defaults (only the backbone and
image size given) and the Keras transfer-learning guide's recipe as written
(`benchmarks/keras_guide.py`: frozen base at 1e-3, then everything unfrozen
at 1e-5) with the same epochs, and prints one row per cell:

- the guide: validation accuracy after its last epoch of stage 1 and of
  stage 2 (what its user ends with; it keeps no best epoch);
- tfl: stage 1 and stage 2 (best epoch of each, chosen on val), the kept
  model, stage 2's last epoch (no choice made on val, for comparison), and
  the depth `--unfreeze auto` chose with the seconds that decision cost;
- the margin (tfl kept - guide final) and both wall times.

Then the smallest margin, whether the kept model is ever worse than stage 1,
and `ratio:` (the guide's total wall time over tfl's).

Every figure is validation accuracy on the dataset's val/ folder; tfl chose
its kept epoch on that split, the guide chose nothing.

Usage:
    python benchmarks/defaults_matrix.py                       # 4 datasets x 4 backbones at 224 px: hours
    python benchmarks/defaults_matrix.py --image-size 160 --datasets hymenoptera_data,rsscn7_subset
    python benchmarks/defaults_matrix.py --results cells.jsonl  # keep finished cells; a rerun skips them
    python benchmarks/defaults_matrix.py --results cells.jsonl --rerun-tfl  # new defaults, the guide's cells kept
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_common.setup()

DATASETS = ("hymenoptera_data", "trashnet_subset", "rsscn7_subset", "intel_scenes_subset")
# The backbones with real ImageNet weights in ../shared/keras-weights.
BACKBONES = ("mobilenet_025", "mobilenet_v2_035", "mobilenet_075", "mobilenet_v2")


def run_tfl(data_dir, backbone, args, out) -> dict:
    import tfl

    with _common.Timer() as t:
        r = tfl.fine_tune(data=_common.folder_source(data_dir), backbone=backbone, image_size=args.image_size,
                          epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs, seed=args.seed, out=out,
                          overwrite=True, verbose=0)
    with open(os.path.join(r.run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    with open(os.path.join(r.run_dir, "history.json"), encoding="utf-8") as f:
        history = json.load(f)
    depth = (metrics.get("decisions") or {}).get("stage 2 depth", {})
    last2 = (history.get("stage2") or {}).get("val_accuracy") or [float("nan")]
    return {"tfl_stage1": r.stage1.get("val_accuracy"), "tfl_stage2": r.stage2.get("val_accuracy"),
            "tfl_kept": r.val_accuracy, "tfl_stage2_last": last2[-1], "kept_stage": r.best_stage,
            "depth": depth.get("chosen", "").replace("--unfreeze ", ""), "depth_seconds": depth.get("seconds"),
            "tfl_seconds": t.wall}


def run_guide(data_dir, backbone, args) -> dict:
    from keras_guide import keras_guide_recipe

    from tfl.models.backbones import get_backbone

    size = args.image_size or get_backbone(backbone).default_size
    with _common.Timer() as t:
        r = keras_guide_recipe(_common.folder_path(data_dir), backbone, size, epochs=args.epochs,
                               fine_tune_epochs=args.fine_tune_epochs, seed=args.seed, autotune=False)
    return {"guide_stage1": r["stage1"], "guide_final": r["stage2"], "guide_best": r["stage2_best"],
            "guide_seconds": t.wall}


def main(argv=None):
    from tfl.config import TrainConfig

    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="names under ../shared/datasets, or folders")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--image-size", type=int, default=None, help="default: each backbone's own (224)")
    p.add_argument("--epochs", type=int, default=defaults.stage1.epochs, help="stage 1 epochs of both")
    p.add_argument("--fine-tune-epochs", type=int, default=defaults.stage2.epochs, help="stage 2 epochs of both")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tfl-only", action="store_true", help="skip the guide (its columns stay empty)")
    p.add_argument("--results", help="JSON-lines file: finished cells are appended and skipped on a rerun")
    p.add_argument("--rerun-tfl", action="store_true",
                   help="with --results: train tfl again in every cell (its defaults changed since) and keep the "
                        "guide's finished columns (the guide's recipe does not change with tfl)")
    args = p.parse_args(argv)

    def folder(name):
        return name if os.path.isdir(os.path.join(name, "train")) else os.path.join(_common.SHARED, "datasets", name)

    datasets = [folder(d) for d in args.datasets.split(",") if d]
    for d in datasets:
        if not os.path.isdir(os.path.join(d, "train")):
            p.error(f"--datasets: {d} has no train/<class>/ folders")
    done = {}
    if args.results and os.path.exists(args.results):
        with open(args.results, encoding="utf-8") as f:
            for line in f:
                cell = json.loads(line)
                done[(cell["dataset"], cell["backbone"], cell["image_size"], cell["epochs"])] = cell
    print(f"machine: {_common.machine()}", flush=True)
    cells = []
    with tempfile.TemporaryDirectory(prefix="tfl-matrix-") as tmp:
        for data_dir in datasets:
            for backbone in args.backbones.split(","):
                name = os.path.basename(os.path.normpath(data_dir))
                key = (name, backbone, args.image_size, f"{args.epochs}+{args.fine_tune_epochs}")
                cell = done.get(key)
                if cell is not None and args.rerun_tfl:  # the guide's columns only: tfl's are trained again
                    cell = {k: v for k, v in cell.items() if k.startswith("guide_")} | {
                        k: cell[k] for k in ("dataset", "backbone", "image_size", "epochs")}
                if cell is None or "tfl_kept" not in cell or (cell.get("guide_final") is None and not args.tfl_only):
                    cell = {"dataset": name, "backbone": backbone, "image_size": args.image_size,
                            "epochs": key[-1], **(cell or {})}
                    if "tfl_kept" not in cell:
                        _common.reset_keras(args.seed)
                        cell.update(run_tfl(data_dir, backbone, args, os.path.join(tmp, f"{name}-{backbone}")))
                    if not args.tfl_only and cell.get("guide_final") is None:
                        _common.reset_keras(args.seed)
                        cell.update(run_guide(data_dir, backbone, args))
                    if args.results:
                        with open(args.results, "a", encoding="utf-8") as f:
                            f.write(json.dumps(cell) + "\n")
                cells.append(cell)
                print(f"  {name} {backbone}: tfl {cell['tfl_kept']:.4f} (depth {cell['depth']}, "
                      f"{cell['tfl_seconds']:.0f}s)" + (f", guide {cell['guide_final']:.4f} "
                                                         f"({cell['guide_seconds']:.0f}s)"
                                                         if cell.get("guide_final") is not None else ""),
                      flush=True)

    print()
    size = f"{args.image_size} px" if args.image_size else "each backbone's default size"
    print(f"tfl defaults vs the Keras guide, {size}, {args.epochs}+{args.fine_tune_epochs} epochs, seed {args.seed}; "
          "validation accuracy on val/ (tfl's kept epoch chosen on it; the guide's last epoch)")

    def f(v):
        return "—" if v is None else v

    print(_common.table(
        ["dataset", "backbone", "guide s1", "guide final", "tfl s1", "tfl s2", "tfl s2 last", "tfl kept", "margin",
         "depth (s)", "guide s", "tfl s"],
        [[c["dataset"], c["backbone"], f(c.get("guide_stage1")), f(c.get("guide_final")), c["tfl_stage1"],
          f(c["tfl_stage2"]), c["tfl_stage2_last"], c["tfl_kept"],
          f(None if c.get("guide_final") is None else c["tfl_kept"] - c["guide_final"]),
          f"{c['depth']} ({c['depth_seconds'] or 0:.0f})", f(c.get("guide_seconds")), c["tfl_seconds"]]
         for c in cells]))
    worse = [c for c in cells if c["tfl_kept"] < c["tfl_stage1"]]
    print(f"kept model worse than stage 1: {len(worse)} of {len(cells)} cells")
    compared = [c for c in cells if c.get("guide_final") is not None]
    if compared:
        margins = [c["tfl_kept"] - c["guide_final"] for c in compared]
        low = min(range(len(compared)), key=lambda i: margins[i])
        print(f"smallest margin: {margins[low]:+.4f} ({compared[low]['dataset']}, {compared[low]['backbone']}); "
              f"cells at least 3 points ahead: {sum(m >= 0.03 for m in margins)} of {len(compared)}")
        print(f"ratio: {sum(c['guide_seconds'] for c in compared) / sum(c['tfl_seconds'] for c in compared):.2f}")


if __name__ == "__main__":
    main()
