"""Runs the Keras guide's recipe at tfl's default epochs, one JSON result per dataset.

conftest.py starts this in the background when the session collects a test
that uses the `keras_guide_baseline` fixture, so that the baseline trains
beside the rest of the suite instead of after it.

Usage: python tests/_keras_guide_baseline.py OUT_DIR DATASET_DIR [DATASET_DIR ...]
"""

import json
import os
import sys


def main(out_dir, *datasets):
    from keras_guide import keras_guide_recipe

    from tfl.config import TrainConfig

    defaults = TrainConfig()
    epochs, fine_tune_epochs = defaults.stage1.epochs, defaults.stage2.epochs
    for path in datasets:
        result = keras_guide_recipe(path, "mobilenet_025", 224, epochs, fine_tune_epochs, "imagenet",
                                    autotune=False)
        result.update(epochs=epochs, fine_tune_epochs=fine_tune_epochs)
        final = os.path.join(out_dir, os.path.basename(os.path.normpath(path)) + ".json")
        with open(final + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(final + ".tmp", final)
        print(f"{path}: stage 1 {result['stage1']:.4f}, stage 2 {result['stage2']:.4f}, "
              f"{result['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
