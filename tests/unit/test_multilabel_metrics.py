"""Multi-label scores, thresholds and label weights: pure numpy, against values worked out by hand."""

import numpy as np
import pytest

from tfl.data.checks import balanced_label_weights
from tfl.serving import evaluation


def test_average_precision_is_the_mean_precision_at_each_positive():
    # Ranked: + - + -: precision 1/1 at the first positive, 2/3 at the second.
    assert evaluation.average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2)
    # A tie between a positive and a negative counts both at once: precision 1/2 at recall 1.
    assert evaluation.average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert np.isnan(evaluation.average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_pr_curve_keeps_the_corners_of_the_step_curve():
    curve = evaluation.pr_curve(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 0]))
    assert curve == {"threshold": [0.9, 0.7, 0.5], "precision": [1.0, 2 / 3, 0.4], "recall": [0.5, 1.0, 1.0]}
    rng = np.random.default_rng(0)
    scores, truth = rng.random(2000), rng.random(2000) < 0.5
    thin = evaluation.pr_curve(scores, truth, max_points=50)
    assert len(thin["recall"]) <= 50 and thin["recall"][-1] == 1.0 and thin["threshold"][0] == scores[truth].max()


def test_thresholds_maximise_each_labels_f1_on_a_coarse_grid():
    probs = np.array([[0.30, 0.9], [0.20, 0.8], [0.10, 0.7], [0.12, 0.2]])
    truth = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    t = evaluation.choose_thresholds(probs, truth)
    # Label 0: anything in (0.12, 0.20] separates perfectly; the grid's 0.15 and 0.20 do, 0.20 is nearer 0.5.
    # Label 1: only 0.9 is positive: thresholds in (0.8, 0.9] give F1 1, the grid's nearest to 0.5 is 0.85.
    assert t.tolist() == [0.2, 0.85]
    # A label no image has keeps 0.5.
    assert evaluation.choose_thresholds(probs[:, :1], np.zeros((4, 1))).tolist() == [0.5]


def test_multilabel_metrics_by_hand():
    probs = np.array([[0.9, 0.6, 0.1], [0.8, 0.2, 0.3], [0.3, 0.7, 0.2], [0.1, 0.4, 0.6]])
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]])
    m = evaluation.multilabel_metrics(probs, truth, ["a", "b", "c"], [0.5, 0.5, 0.5])
    # predicted: {a, b}, {a}, {b}, {c}; a: tp 2; b: tp 1, fp 1, fn 1; c: fp 1 (no image has c).
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2,
                                   "average_precision": 1.0, "threshold": 0.5, "true_positives": 2,
                                   "false_positives": 0, "false_negatives": 0}
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["support"] == 0 and m["per_class"]["c"]["false_positives"] == 1
    assert m["macro_f1"] == pytest.approx((1.0 + 0.5) / 2)  # over the labels some image has
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))  # tp 3, fp 2, fn 1
    # b ranked: 0.7 (-), 0.6 (+), 0.4 (+), 0.2: precision 1/2 then 2/3.
    assert m["map"] == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)
    assert m["accuracy"] == pytest.approx(2 / 4) and m["binary_accuracy"] == pytest.approx(9 / 12)
    expected_loss = -np.mean(np.where(truth == 1, np.log(probs), np.log(1 - probs)))
    assert m["loss"] == pytest.approx(expected_loss)
    # Per-label thresholds change what is predicted: c at 0.7 is never predicted, b at 0.65 only for image 3.
    m2 = evaluation.multilabel_metrics(probs, truth, ["a", "b", "c"], [0.5, 0.65, 0.7])
    assert m2["per_class"]["c"]["false_positives"] == 0 and m2["per_class"]["b"]["true_positives"] == 0
    assert m2["thresholds"] == {"a": 0.5, "b": 0.65, "c": 0.7}


def test_format_metrics_prints_a_row_per_label_with_its_threshold():
    m = evaluation.multilabel_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]),
                                      ["ants", "landscape"], [0.4, 0.6])
    text = evaluation.format_metrics(m).splitlines()
    assert text[0].startswith("macro F1 1.0000   micro F1 1.0000   mAP 1.0000   exact match 1.0000")
    assert [line.split()[:2] for line in text[3:5]] == [["ants", "0.40"], ["landscape", "0.60"]]


def test_balanced_label_weights_weigh_present_and_absent_as_two_balanced_classes():
    weights = balanced_label_weights([20, 80, 0], 100)
    assert weights == [(2.5, 0.625), (0.625, 2.5), (1.0, 1.0)]
    # Weighted, presence and absence of each label count alike: 20 * 2.5 == 80 * 0.625.
    assert 20 * weights[0][0] == 80 * weights[0][1]
