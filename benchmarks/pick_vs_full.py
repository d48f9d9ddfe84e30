"""`tfl pick` against full two-stage runs of every candidate: is the cheap ranking the expensive one?

For each dataset: `tfl.pick` over the candidates (linear probe on frozen
features, latency, size), timed; then a full `tfl.fine_tune` run of every
candidate with tfl's default epochs, timed, scored on the same validation
split. Prints per dataset the pick's ranking and seconds, the full runs'
accuracies and seconds, the Spearman rank correlation between probe and
full-run accuracies, and the gap between the best full-run accuracy and the
picked backbone's. The last lines: the largest gap over the datasets and
`ratio: X` (the full runs' time / the pick's time) on hymenoptera (or the
first dataset).

Usage:
    python benchmarks/pick_vs_full.py --datasets hymenoptera_data
    python benchmarks/pick_vs_full.py --datasets trashnet_subset,rsscn7_subset --image-size 160
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_common.setup()

# The backbones whose real ImageNet weights are in ../shared/keras-weights.
REAL_WEIGHTS = "mobilenet_025,mobilenet_v2_035,mobilenet_075,mobilenet_v2"
DATASETS = "hymenoptera_data,trashnet_subset,rsscn7_subset,intel_scenes_subset"


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties get their average rank)."""
    def ranks(x):
        x = np.asarray(x, float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def run_dataset(path, args, tmp):
    import tfl

    source = _common.folder_source(path)
    name = os.path.basename(os.path.normpath(path))
    _common.reset_keras(args.seed)
    with _common.Timer() as t:
        picked = tfl.pick(source, candidates=args.candidates, image_size=args.image_size, seed=args.seed,
                          out=os.path.join(tmp, f"pick-{name}"))
    probe = {c.name: c for c in picked.scored}
    print(f"\n{name}: pick in {t.wall:.1f}s wall ({t.cpu:.1f}s CPU), chose {picked.chosen}", flush=True)
    print(picked.table(), flush=True)
    full = {}
    for cand in args.candidates.split(","):
        if cand not in probe:
            continue
        _common.reset_keras(args.seed)
        with _common.Timer() as ft:
            result = tfl.fine_tune(data=source, backbone=cand, image_size=args.image_size, epochs=args.epochs,
                                   fine_tune_epochs=args.fine_tune_epochs, seed=args.seed,
                                   out=os.path.join(tmp, f"{name}-{cand}"), overwrite=True, verbose=0)
        full[cand] = {"accuracy": result.val_accuracy, "seconds": ft.wall, "stage": result.best_stage}
        print(f"  full run {cand}: val_accuracy {result.val_accuracy:.4f} (kept stage {result.best_stage}) "
              f"in {ft.wall:.1f}s", flush=True)
    names = list(full)
    rho = spearman([probe[n].accuracy for n in names], [full[n]["accuracy"] for n in names])
    best = max(names, key=lambda n: full[n]["accuracy"])
    gap = full[best]["accuracy"] - full[picked.chosen]["accuracy"]
    full_seconds = sum(f["seconds"] for f in full.values())
    print(_common.table(["backbone", "probe acc", "batch-1 ms", "pick s", "full acc", "full s"],
                        [[n, probe[n].accuracy, probe[n].batch1_ms, probe[n].seconds, full[n]["accuracy"],
                          full[n]["seconds"]] for n in sorted(names, key=lambda n: -full[n]["accuracy"])]))
    print(f"{name}: pick {t.wall:.1f}s, full runs {full_seconds:.1f}s ({full_seconds / t.wall:.1f}x); "
          f"Spearman {rho:.2f}; picked {picked.chosen} (full {full[picked.chosen]['accuracy']:.4f}), best "
          f"{best} (full {full[best]['accuracy']:.4f}): gap {100 * gap:.1f} points", flush=True)
    return {"name": name, "pick_seconds": t.wall, "full_seconds": full_seconds, "rho": rho, "gap": gap,
            "chosen": picked.chosen, "best": best}


def main(argv=None):
    from tfl.config import TrainConfig

    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=DATASETS,
                   help="comma-separated dataset folders, or names of folders in ../shared/datasets")
    p.add_argument("--candidates", default=REAL_WEIGHTS, help="backbones to compare")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=defaults.stage1.epochs, help="stage 1 epochs (tfl's default)")
    p.add_argument("--fine-tune-epochs", type=int, default=defaults.stage2.epochs,
                   help="stage 2 epochs (tfl's default)")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    paths = []
    for d in args.datasets.split(","):
        path = d if os.path.isdir(d) else os.path.join(_common.SHARED, "datasets", d)
        if not os.path.isdir(os.path.join(path, "train")):
            p.error(f"--datasets {d}: expected a folder with train/<class>/ and val/<class>/ images")
        paths.append(path)
    print(f"machine: {_common.machine()}", flush=True)
    print(f"candidates {args.candidates}; {args.image_size} px; full runs {args.epochs}+{args.fine_tune_epochs} "
          "epochs; accuracies on each dataset's val split", flush=True)
    with tempfile.TemporaryDirectory(prefix="tfl-bench-pick-") as tmp:
        rows = [run_dataset(path, args, tmp) for path in paths]
    print()
    print(_common.table(["dataset", "pick s", "full runs s", "full/pick", "Spearman", "picked", "best full",
                         "gap (points)"],
                        [[r["name"], r["pick_seconds"], r["full_seconds"], r["full_seconds"] / r["pick_seconds"],
                          f"{r['rho']:.2f}", r["chosen"], r["best"], f"{100 * r['gap']:.1f}"] for r in rows]))
    main_row = next((r for r in rows if r["name"] == "hymenoptera_data"), rows[0])
    print(f"largest gap: {100 * max(r['gap'] for r in rows):.1f} points")
    print(f"ratio: {main_row['full_seconds'] / main_row['pick_seconds']:.2f}")


if __name__ == "__main__":
    main()
