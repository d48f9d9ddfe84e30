"""The arithmetic of learning rates: discriminative rates, the LR finder's smoothing and suggestions.

`LayerGroups` (which variables form which group, `released_groups`) needs a Keras model to be built, so it
is tested with the trainer, not here.
"""

import math

import pytest

from tfl.training._discriminative import geometric_rates
from tfl.training.lr_finder import METHODS, smooth, suggest


# -- geometric_rates -------------------------------------------------------------------------------------------
def test_geometric_rates_are_evenly_spaced_on_a_log_scale():
    assert geometric_rates(1e-5, 1e-3, 3) == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-12)
    assert geometric_rates(1e-4, 1.6e-3, 5) == pytest.approx([1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3], rel=1e-12)


def test_geometric_rates_end_at_high_exactly():
    rates = geometric_rates(1e-5, 1e-3, 4)
    assert rates[0] == 1e-5 and rates[-1] == pytest.approx(1e-3, rel=1e-15)
    assert all(a < b for a, b in zip(rates, rates[1:]))


def test_one_group_gets_the_high_rate():
    assert geometric_rates(1e-5, 1e-3, 1) == [1e-3]
    assert geometric_rates(1e-5, 1e-3, 2) == pytest.approx([1e-5, 1e-3])


# -- smooth ---------------------------------------------------------------------------------------------------
def test_smoothing_is_bias_corrected():
    # Without the correction the first values would be pulled towards 0; a constant curve stays constant.
    assert smooth([2.0] * 50) == pytest.approx([2.0] * 50)


def test_smoothing_by_hand():
    # beta 0.5: avg1 = 0.5 -> 0.5 / (1 - 0.5) = 1; avg2 = 0.25 -> 0.25 / (1 - 0.25) = 1/3
    assert smooth([1.0, 0.0], beta=0.5) == pytest.approx([1.0, 1 / 3])
    assert smooth([3.0, 1.0, 4.0], beta=0.0) == [3.0, 1.0, 4.0]  # beta 0: no smoothing at all
    assert smooth([]) == []


def test_smoothing_lags_behind_a_jump():
    out = smooth([1.0] * 10 + [11.0] * 10, beta=0.9)
    assert out[9] == pytest.approx(1.0)
    assert 1.0 < out[10] < out[15] < 11.0


# -- suggest --------------------------------------------------------------------------------------------------
# 15 rates a decade apart, 1e-8 .. 1e6: LRS[k] = 10 ** (k - 8).
LRS = [10.0 ** (k - 8) for k in range(15)]
# Flat, then falling steadily from index 2 to its minimum at index 11, then blowing up.
CURVE = [3.0, 3.0, 2.9, 2.7, 2.5, 2.3, 2.1, 1.9, 1.7, 1.5, 1.3, 1.1, 1.6, 4.0, 9.0]


def test_minimum_is_a_tenth_of_the_rate_at_the_lowest_loss():
    assert suggest(LRS, CURVE, "minimum") == pytest.approx(LRS[11] / 10)  # 1e3 / 10


def test_steepest_is_where_the_loss_falls_fastest():
    curve = list(CURVE)
    # Central differences elsewhere are -0.4 per two decades; index 5 (2.45) -> index 7 (1.6) is -0.85.
    curve[5], curve[6], curve[7] = 2.45, 1.95, 1.6
    assert suggest(LRS, curve, "steepest") == LRS[6]


def test_steepest_skips_the_noisy_first_tenth():
    curve = [9.0, 1.0] + [1.0 - 0.01 * k for k in range(13)]  # the biggest drop is at the very start
    # 15 points: the search starts at index max(1, 15 // 10) = 1, whose central difference (9 -> 0.99) wins.
    assert suggest(LRS, curve, "steepest") == LRS[1]
    lrs = [10.0 ** (k / 10 - 8) for k in range(40)]
    curve = [9.0, 5.0, 3.0, 2.5] + [2.5 - 0.01 * k for k in range(36)]
    curve[20] -= 0.1  # a dip: the central difference at index 19 is -0.12, elsewhere after index 4 -0.02
    # 40 points: indices 0-3 (the drop from 9 to 2.5) are skipped.
    assert suggest(lrs, curve, "steepest") == lrs[19]


def test_valley_is_a_little_past_the_middle_of_the_longest_fall():
    # Longest decreasing run: 3.0 (index 1) .. 1.1 (index 11), 11 points, so start = 11 - 11 + 1 = 1;
    # section = (11 - 1) / 3 = 3.33: the suggestion is index 1 + 3 + int(1.67) = 5, in the falling part.
    assert suggest(LRS, CURVE, "valley") == LRS[5]
    assert suggest(LRS, CURVE) == LRS[5]  # valley is the default


def test_valley_ignores_a_shorter_earlier_fall():
    # A short fall (indices 0-2), a bump, then a long one (indices 3-12).
    curve = [5.0, 4.0, 3.5, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 7.0, 9.0]
    # Longest: 9.0 (3) .. 0.5 (12), 10 points; start 3, section 3: index 3 + 3 + 1 = 7.
    assert suggest(LRS, curve, "valley") == LRS[7]


def test_every_method_is_known_and_others_are_refused():
    assert METHODS == ("valley", "steepest", "minimum")
    with pytest.raises(ValueError) as info:
        suggest(LRS, CURVE, "median")
    assert str(info.value) == "unknown suggestion method 'median': use one of valley, steepest, minimum"


def test_too_short_a_curve_gives_its_first_rate():
    assert suggest([1e-4, 1e-3], [1.0, 0.5], "steepest") == 1e-4
    assert math.isnan(suggest([], []))
