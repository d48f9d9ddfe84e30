"""The rule of `--unfreeze auto` (tfl.training.depth): which cut the probe scores choose, and the candidates."""

import numpy as np
import pytest

from tfl.training import depth


def test_candidates_are_two_blocks_a_quarter_and_a_half():
    assert depth.candidate_blocks(14) == [2, 4, 7]  # MobileNet v1
    assert depth.candidate_blocks(18) == [2, 4, 9]  # MobileNetV2
    assert depth.candidate_blocks(6) == [2, 3]  # VGG: a quarter rounds to 2
    assert depth.candidate_blocks(3) == [2]
    assert depth.candidate_blocks(2) == []


V1 = {"top": 256, "2blocks": 128, "4blocks": 128, "7blocks": 128}  # MobileNet 0.25 at 224 px
V2 = {"top": 1280, "2blocks": 56, "4blocks": 32, "7blocks": 24}  # MobileNetV2 0.35


@pytest.mark.parametrize("scores,widths,chosen", [
    # Measured: hymenoptera (ImageNet-like) at 224 px, MobileNet 0.25: the final features are about as wide as
    # the cuts and clearly better than 4 blocks down -> keep the blocks.
    ({"top": 0.850, "2blocks": 0.824, "4blocks": 0.817, "7blocks": 0.791}, V1, "2blocks"),
    # trashnet at 224 px and aerial rsscn7 at 160 px, MobileNet 0.25: deeper features as good -> retrain.
    ({"top": 0.725, "2blocks": 0.725, "4blocks": 0.750, "7blocks": 0.767}, V1, "7blocks"),
    ({"top": 0.839, "2blocks": 0.848, "4blocks": 0.835, "7blocks": 0.830}, V1, "7blocks"),
    # MobileNetV2 0.35: its 1280-wide final features out-probe any narrow cut; only the cuts are compared.
    ({"top": 0.884, "2blocks": 0.835, "4blocks": 0.812, "7blocks": 0.848}, V2, "7blocks"),  # rsscn7
    ({"top": 0.895, "2blocks": 0.856, "4blocks": 0.837, "7blocks": 0.765}, V2, "4blocks"),  # hymenoptera
    # The deepest close cut wins even when a shallower one is not close (noise between cuts).
    ({"top": 0.75, "2blocks": 0.75, "4blocks": 0.78, "7blocks": 0.60}, V1, "4blocks"),
    ({"top": 0.80, "2blocks": 0.70, "4blocks": 0.50, "7blocks": 0.40}, V1, "2blocks"),
])
def test_the_deepest_cut_close_to_the_features_above_it_wins(scores, widths, chosen):
    unfreeze, why = depth.choose(scores, [2, 4, 7], widths=widths)
    assert unfreeze == chosen
    assert f"{scores['top']:.3f}" in why and f"{scores['2blocks']:.3f}" in why and "\n" not in why


def test_without_candidates_the_minimum_is_chosen():
    assert depth.choose({"top": 0.9}, [])[0] == "2blocks"


def test_probe_separates_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    signal = rng.normal(size=(120, 16)) + np.eye(3)[y] @ rng.normal(size=(3, 16)) * 4
    noise = rng.normal(size=(120, 16))
    half = np.arange(120) % 2 == 0
    assert depth.probe_accuracy(signal[half], y[half], signal[~half], y[~half]) > 0.9
    assert depth.probe_accuracy(noise[half], y[half], noise[~half], y[~half]) < 0.6


def test_balanced_subsample_keeps_at_most_n_per_class_seeded():
    from tfl.data.splits import Split

    split = Split("train", [0] * 10 + [1] * 3, [f"a{i}.jpg" for i in range(10)] + ["b0.jpg", "b1.jpg", "b2.jpg"])
    sub = depth.balanced_subsample(split, 4, seed=1)
    assert sorted(sub.labels) == [0, 0, 0, 0, 1, 1, 1]
    assert depth.balanced_subsample(split, 4, seed=1).paths == sub.paths
    assert depth.balanced_subsample(split, 20, seed=1) is split
