"""Runs the Keras guide's recipe at tfl's default epochs, one JSON result per dataset and backbone.

conftest.py starts this in the background when the session collects a test
that uses the `keras_guide_baseline` fixture, so that the baseline trains
beside the rest of the suite instead of after it.

Usage: python tests/_keras_guide_baseline.py OUT_DIR DATASET_DIR@BACKBONE [DATASET_DIR@BACKBONE ...]
(`OUT_DIR/<dataset>@<backbone>.json` each)
"""

import json
import os
import sys


def main(out_dir, *datasets):
    from keras_guide import keras_guide_recipe

    from tfl.config import TrainConfig

    defaults = TrainConfig()
    epochs, fine_tune_epochs = defaults.stage1.epochs, defaults.stage2.epochs
    for cell in datasets:
        path, _, backbone = cell.rpartition("@")
        result = keras_guide_recipe(path, backbone, 224, epochs, fine_tune_epochs, "imagenet", autotune=False)
        result.update(epochs=epochs, fine_tune_epochs=fine_tune_epochs, backbone=backbone)
        final = os.path.join(out_dir, f"{os.path.basename(os.path.normpath(path))}@{backbone}.json")
        with open(final + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(final + ".tmp", final)
        print(f"{path} {backbone}: stage 1 {result['stage1']:.4f}, stage 2 {result['stage2']:.4f}, "
              f"{result['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
