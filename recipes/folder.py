#!/usr/bin/env python
"""folder: fine-tune on your own photos in class folders (`--data folder:PATH`).

\b
Dataset:   PATH/train/<class>/*.jpg and PATH/val/<class>/*.jpg (or class
           folders directly under PATH: tfl then holds out 20%).
Backbone:  tfl's default (mobilenet_v2_035, ImageNet weights) at the
           backbone's default size (224 px).
Schedule:  tfl's defaults for both stages (`tfl train --help`); stage 2's
           depth is decided from your data (`--unfreeze auto`).
Expected:  on hymenoptera_data at 224 px (the data of PyTorch's
           transfer-learning tutorial,
           https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html)
           0.922 validation accuracy (MobileNet 0.25: 0.889; tfl's bar: 0.87).

Why: a small backbone is the right start on a new dataset of a few hundred
images: it trains in a minute or two on a CPU and shows whether the data is
learnable; then try `--backbone efficientnet_b0` or the dataset recipes.

\b
Examples:
  python recipes/folder.py --data folder:hymenoptera_data
  python recipes/folder.py --data folder:photos --backbone efficientnet_b0 --out runs/photos
"""

import _recipe

RECIPE = _recipe.Recipe(
    name="folder", data=None, backbone=None, image_size=None, epochs=None, fine_tune_epochs=None,
    expected="target >= 0.87 validation accuracy on hymenoptera_data at 224 px (tfl's defaults)",
    source="tfl's own bar; data of https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html",
)
main = RECIPE.command(__doc__)

if __name__ == "__main__":
    main()
