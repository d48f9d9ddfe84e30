#!/usr/bin/env python
"""oxford_iiit_pet: 37 breeds of cats and dogs (tfds `oxford_iiit_pet`).

\b
Dataset:   tfds:oxford_iiit_pet: 3,680 train / 3,669 test photos, about
           100 per breed; with no validation split, tfl validates on test.
Backbone:  efficientnet_b0 at 224 px.
Schedule:  20 epochs of the head (tfl's default; a fine-grained 37-way
           head needs many passes, which are cheap on cached features),
           then 10 epochs with the top 2 blocks
           unfrozen (BatchNorm frozen), tfl's default learning rates.
Expected:  reference: 94.47% top-1 for BiT-M (ResNet-152x4 pre-trained on
           ImageNet-21k) in Kolesnikov et al., "Big Transfer (BiT):
           General Visual Representation Learning", ECCV 2020,
           https://arxiv.org/abs/1912.11370. That is a 900 M-parameter
           model; expect several points less from EfficientNet-B0.

Why: breeds are ImageNet-like categories (ImageNet has many of them), so
frozen ImageNet features already separate most breeds and only the top of
the backbone needs adapting; a shallow unfreeze keeps 3,680 images from
overfitting a deep one.

\b
Examples:
  python recipes/oxford_iiit_pet.py
  python recipes/oxford_iiit_pet.py --data folder:pets --backbone efficientnet_b3 --image-size 300
"""

import _recipe

RECIPE = _recipe.Recipe(
    name="oxford_iiit_pet", data="tfds:oxford_iiit_pet", backbone="efficientnet_b0", image_size=224,
    epochs=20, fine_tune_epochs=10, unfreeze="2blocks",
    expected="reference 94.47% top-1, BiT-M ResNet-152x4 (far larger model)",
    source="Kolesnikov et al., Big Transfer (BiT), ECCV 2020, arXiv:1912.11370",
)
main = RECIPE.command(__doc__)

if __name__ == "__main__":
    main()
