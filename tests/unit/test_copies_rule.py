"""How many augmented copies stage 1 caches: at most `augment_copies` and the epochs, fewer on large sets."""

import pytest

from tfl.config import TrainConfig
from tfl.training.plan import AUGMENTED_IMAGES, cached_copies


@pytest.mark.parametrize("num_train, expected", [(244, 8), (360, 8), (896, 6), (1440, 4), (3904, 2), (10**6, 2)])
def test_copies_shrink_with_the_training_set(num_train, expected):
    assert cached_copies(TrainConfig(), 20, num_train) == expected
    if 2 < expected < 8:  # under the cap: enough copies for about AUGMENTED_IMAGES images, not one more
        assert (expected - 1) * num_train < AUGMENTED_IMAGES <= expected * num_train


def test_the_cap_the_epochs_and_no_augmentation_still_rule():
    cfg = TrainConfig()
    assert cached_copies(cfg, 3, 100) == 3  # never more copies than epochs
    cfg.augment_copies = 5
    assert cached_copies(cfg, 20, 100) == 5
    cfg.model.augment = False
    assert cached_copies(cfg, 20, 100) == 1
