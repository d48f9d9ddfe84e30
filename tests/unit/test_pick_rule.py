"""The pick's arithmetic without TensorFlow: the linear probe, the recommendation rule, the Pareto front,
the candidate list and the class-balanced subsample."""

import numpy as np
import pytest

from tfl.errors import TflError, UsageError
from tfl.selection import candidates as C
from tfl.selection.probe import linear_probe
from tfl.selection.result import Candidate
from tfl.selection.rule import decide as _decide
from tfl.selection.rule import mark_pareto as _mark_pareto


def _blobs(n_per_class, dim, classes, shift, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * shift
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, dim)) for c in range(classes)])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def test_the_probe_separates_separable_features_and_is_at_chance_on_noise():
    x, y = _blobs(60, 32, 3, shift=3.0, seed=0)
    vx, vy = _blobs(30, 32, 3, shift=3.0, seed=0)  # same centres (same seed), fresh noise
    vx = vx + np.random.default_rng(5).normal(0, 0.1, vx.shape).astype(np.float32)
    good = linear_probe(x, y, vx, vy, 3)
    assert good.accuracy > 0.95 and good.num_val == 90
    assert good.stderr == pytest.approx(np.sqrt(good.accuracy * (1 - good.accuracy) / 90))
    rng = np.random.default_rng(1)
    noise = linear_probe(rng.normal(size=(180, 32)), rng.integers(0, 3, 180), rng.normal(size=(300, 32)),
                         rng.integers(0, 3, 300), 3)
    assert 0.2 < noise.accuracy < 0.45  # chance is 1/3
    again = linear_probe(x, y, vx, vy, 3)
    assert (again.accuracy, again.l2, again.cv_accuracy) == (good.accuracy, good.l2, good.cv_accuracy)  # deterministic


def _row(name, acc, ms, params=1_000_000):
    # The estimate from all labelled images equal to the probe's, and as wide: the validation probe decides.
    return Candidate(name, 224, accuracy=acc, batch1_ms=ms, batch_ms=ms / 2, stderr=0.02, params=params,
                     pooled=acc, pooled_stderr=0.02)


def test_the_best_probe_wins_and_a_tie_goes_to_the_faster():
    rows = [_row("big", 0.95, 50.0), _row("small", 0.90, 10.0)]
    chosen, why = _decide(rows, 0.01, None, None)
    assert chosen == "big" and "the best linear-probe accuracy" in why
    rows = [_row("big", 0.95, 50.0), _row("small", 0.945, 10.0)]
    chosen, why = _decide(rows, 0.01, None, None)
    assert chosen == "small"
    assert "within 0.01 of the best (big, 0.9500)" in why and "10.0 against 50.0 ms" in why
    chosen, _ = _decide(rows, 0.001, None, None)  # a tighter tie margin keeps the most accurate
    assert chosen == "big"


def test_probes_within_a_fraction_of_a_standard_error_are_tied():
    rows = [_row("big", 0.95, 50.0), _row("small", 0.935, 10.0)]  # 1.5 points apart, standard error 2 points
    assert _decide(rows, 0.01, None, None)[0] == "big"
    chosen, why = _decide(rows, 0.01, None, None, tie_stderr=1.0)
    assert chosen == "small" and "within 0.02 of the best" in why
    assert _decide(rows, 0.01, None, None, tie_stderr=0.5)[0] == "big"  # half a standard error: 1 point


def test_a_tie_must_hold_on_the_estimate_from_all_labelled_images_too():
    """intel_scenes' case: four probes within a point on 360 validation images; on all 1800 labelled images (the
    leave-one-out accuracy on train pooled with val) the fastest trails by 2 points, so it is not an equal."""
    def row(name, acc, pooled, ms):
        r = _row(name, acc, ms)
        r.stderr, r.pooled, r.pooled_stderr = 0.016, pooled, (pooled * (1 - pooled) / 1800) ** 0.5
        return r

    rows = [row("small", 0.903, 0.886, 11.6), row("mid", 0.897, 0.910, 20.1), row("big", 0.894, 0.905, 25.8)]
    chosen, why = _decide(rows, 0.01, None, None, tie_stderr=1.0)
    assert chosen == "mid"
    assert why.startswith("mid: linear-probe accuracy 0.8970 on the validation split, within 0.016 of the best "
                          "(small, 0.9030), and the best estimate from all labelled images (0.9100), and the "
                          "fastest of those tied on both")
    rows[2].pooled = 0.915  # big has the best estimate; mid is within a point of it, and faster
    assert "and within 0.01 of the best estimate from all labelled images (big, 0.9150; its own 0.9100), and the " \
        "fastest of those tied on both" in _decide(rows, 0.01, None, None, tie_stderr=1.0)[1]
    rows[2].pooled = 0.905
    assert why.endswith("; faster small (0.8860) trails the best estimate from all labelled images by more than 0.01")
    rows[0].pooled = 0.905  # within a point on both looks: the fastest is an equal again
    assert _decide(rows, 0.01, None, None, tie_stderr=1.0)[0] == "small"
    rows[1].pooled = 0.950  # only mid is within reach of the best estimate, though not the best probe
    assert _decide(rows, 0.01, None, None, tie_stderr=1.0)[0] == "mid"


def test_constraints_that_no_candidate_meets_are_one_usage_line():
    over = [_row("a", None, 30.0), _row("b", None, 12.0)]
    for r in over:
        r.status = "over_latency"
    with pytest.raises(UsageError, match=r"--max-latency-ms 0.0001: every candidate takes longer .*fastest: b, "
                                         r"12.0 ms"):
        _decide(over, 0.01, 0.0001, None)
    big = [Candidate("a", 224, status="over_params", params=5_000_000)]
    with pytest.raises(UsageError, match="--max-params 1,000: every candidate has more"):
        _decide(big, 0.01, None, 1000)
    skipped = [Candidate("a", 224, status="skipped", reason="no ImageNet weights cached and no network (x)")]
    with pytest.raises(TflError, match=r"no candidate could be scored \(a: no ImageNet weights"):
        _decide(skipped, 0.01, None, None)


def test_the_pareto_front_is_what_nothing_beats_on_both_axes():
    rows = [_row("fast", 0.80, 5.0), _row("mid", 0.90, 20.0), _row("dominated", 0.85, 30.0),
            _row("best", 0.95, 60.0)]
    _mark_pareto(rows)
    assert [r.name for r in rows if r.pareto] == ["fast", "mid", "best"]


def test_candidates_resolve_cheapest_first_and_refuse_unknown_names():
    assert C.resolve("mobilenet_v2,mobilenet_025") == ["mobilenet_025", "mobilenet_v2"]
    assert C.resolve() == list(C.DEFAULT_CANDIDATES)  # the default list is already smallest first
    assert set(C.resolve(family="mobilenet")) == {"mobilenet_025", "mobilenet_050", "mobilenet_075", "mobilenet"}
    with pytest.raises(UsageError, match="--candidates: unknown backbone 'mobilenet_v9'; did you mean"):
        C.resolve("mobilenet_v9")
    with pytest.raises(UsageError, match="--family nope: no such family"):
        C.resolve(family="nope")


def test_the_subsample_is_class_balanced_deterministic_and_in_order():
    labels = [0] * 900 + [1] * 90 + [2] * 10
    chosen = C._balanced(labels, 120, seed=3)
    counts = np.bincount(np.asarray(labels)[chosen], minlength=3)
    assert len(chosen) == 120 and counts.tolist() == [55, 55, 10]  # the small class keeps all its images
    assert chosen == sorted(chosen) == C._balanced(labels, 120, seed=3)
    assert chosen != C._balanced(labels, 120, seed=4)
