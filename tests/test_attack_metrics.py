"""Known-answer tests of the leakage metrics (hand-built arrays, sklearn as the reference)."""

import functools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from attacks.metrics import (
    _batched,
    _check,
    advantage,
    auc,
    bootstrap_ci,
    calibration_check,
    membership_metrics,
    param_rel_error,
    recovered_gain,
    roc_curve_points,
    tpr_at_fpr,
)

# members 0.9, 0.7, 0.6, 0.3; non-members 0.8, 0.5, 0.4, 0.2 (worked by hand below)
SMALL_S = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
SMALL_Y = [1, 0, 1, 1, 0, 0, 1, 0]


def _gaussian(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)], np.r_[np.ones(n), np.zeros(n)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40))
def test_auc_equals_sklearn_with_ties(pairs):
    scores, labels = [p[0] for p in pairs], [int(p[1]) for p in pairs]
    assume(len(set(labels)) == 2)
    assert auc(scores=scores, labels=labels) == pytest.approx(roc_auc_score(labels, scores))


@pytest.mark.parametrize("metric", [auc, advantage, functools.partial(tpr_at_fpr, fpr=0.05)])
def test_batched_metric_equals_reference_on_each_resample(metric):
    rng = np.random.default_rng(1)
    s, y = np.round(rng.normal(size=300), 1), (rng.random(300) < 0.4).astype(int)  # many ties
    _, codes = np.unique(-s, return_inverse=True)
    width, pos, neg = codes.max() + 1, [], []
    resampled = []
    for _ in range(20):
        ip = rng.choice(np.flatnonzero(y == 1), int(y.sum()))
        ineg = rng.choice(np.flatnonzero(y == 0), int(len(y) - y.sum()))
        pos.append(np.bincount(codes[ip], minlength=width))
        neg.append(np.bincount(codes[ineg], minlength=width))
        resampled.append((np.r_[s[ip], s[ineg]], np.r_[np.ones(len(ip)), np.zeros(len(ineg))]))
    fast = _batched(metric)(np.array(pos), np.array(neg))
    slow = [metric(scores=rs, labels=ry) for rs, ry in resampled]
    assert fast == pytest.approx(slow, abs=1e-12)
    if metric is auc:
        assert fast == pytest.approx([roc_auc_score(ry, rs) for rs, ry in resampled], abs=1e-12)


@pytest.mark.parametrize("metric", [auc, advantage, functools.partial(tpr_at_fpr, fpr=0.01)])
def test_bootstrap_fast_path_matches_per_resample_calls(metric):
    s, y = _gaussian(150, 0.5, seed=2)
    fast = bootstrap_ci(scores=s, labels=y, metric=metric, resamples=200, seed=3)
    slow = bootstrap_ci(scores=s, labels=y, metric=lambda **kw: metric(**kw), resamples=200,
                        seed=3)  # a lambda is not recognised, so it is called per resample
    assert fast == pytest.approx(slow, abs=1e-12)


def test_tpr_at_fpr_hand_built():
    assert tpr_at_fpr(scores=[3, 2, 1, 0], labels=[1, 1, 0, 0], fpr=0.0) == 1.0
    assert tpr_at_fpr(scores=[5] * 200, labels=[1, 0] * 100, fpr=0.01) == 0.0
    assert tpr_at_fpr(scores=[5] * 200, labels=[1, 0] * 100, fpr=1.0) == 1.0
    expected = {0.0: 0.25, 0.24: 0.25, 0.25: 0.75, 0.5: 0.75, 0.75: 1.0}
    for budget, tpr in expected.items():
        assert tpr_at_fpr(scores=SMALL_S, labels=SMALL_Y, fpr=budget) == tpr, budget
    # ties: the top threshold takes one member and one non-member together
    assert tpr_at_fpr(scores=[1, 1, 0, 0], labels=[1, 0, 1, 0], fpr=0.49) == 0.0
    assert tpr_at_fpr(scores=[1, 1, 0, 0], labels=[1, 0, 1, 0], fpr=0.5) == 0.5


def test_tpr_at_fpr_budget_boundary_is_inclusive():
    # 0.29 * 100 == 28.999999999999996 in floats: exactly 29 false positives must be allowed
    s = np.r_[np.arange(100, 0, -1), [71.5, 0.5]]  # the first member sits under 29 non-members
    y = np.r_[np.zeros(100), [1, 1]]
    assert tpr_at_fpr(scores=s, labels=y, fpr=0.29) == 0.5
    assert tpr_at_fpr(scores=s, labels=y, fpr=0.28) == 0.0


def test_advantage_and_auc_hand_built():
    assert advantage(scores=SMALL_S, labels=SMALL_Y) == 0.5  # threshold 0.6: 3/4 - 1/4
    assert auc(scores=SMALL_S, labels=SMALL_Y) == 11 / 16  # member-beats-non-member pairs
    assert advantage(scores=[1, 1, 1, 1], labels=[1, 0, 1, 0]) == 0.0
    assert advantage(scores=[0, 1, 2, 3], labels=[1, 1, 0, 0]) == 0.0  # inverted attack


def test_roc_points_json_finite_and_thinned_keeping_low_fpr_readings():
    small = roc_curve_points(scores=SMALL_S, labels=SMALL_Y)
    assert small["thresholds"][0] == 1.9 and small["fpr"][0] == small["tpr"][0] == 0.0
    s, y = _gaussian(5000, 1.0, seed=4)
    roc = roc_curve_points(scores=s, labels=y, max_points=200)
    json.dumps(roc, allow_nan=False)
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert len(fpr) <= 200 and np.isfinite(roc["thresholds"]).all()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    for budget in (0.001, 0.01):
        assert tpr[fpr <= budget].max() == tpr_at_fpr(scores=s, labels=y, fpr=budget)


def test_ci_contains_estimate_and_narrows_with_more_data():
    widths = []
    for n in (100, 2000):
        s, y = _gaussian(n, 0.5, seed=5)
        lo, hi = bootstrap_ci(scores=s, labels=y, metric=auc, resamples=500)
        assert lo <= auc(scores=s, labels=y) <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(20)
    assert bootstrap_ci(scores=s, labels=y, metric=auc, seed=9) == bootstrap_ci(
        scores=s, labels=y, metric=auc, seed=9)


def test_calibration_check_passes_same_distribution_fails_shifted():
    rng = np.random.default_rng(6)
    same = calibration_check(nonmember_scores_a=rng.normal(size=500),
                             nonmember_scores_b=rng.normal(size=400), resamples=500, seed=0)
    assert same["passes"] and same["auc"]["ci"][0] <= 0.5 <= same["auc"]["ci"][1]
    shifted = calibration_check(nonmember_scores_a=rng.normal(0.5, 1, 500),
                                nonmember_scores_b=rng.normal(size=400), resamples=500, seed=0)
    assert not shifted["passes"] and shifted["auc"]["value"] > 0.6


def test_membership_metrics_vocabulary_and_json():
    s, y = _gaussian(300, 1.0, seed=7)
    out = membership_metrics(scores=s, labels=y, resamples=200)
    for name in ("auc", "tpr@1%fpr", "tpr@0.1%fpr", "advantage"):
        lo, hi = out[name]["ci"]
        assert lo <= out[name]["value"] <= hi, name
    assert out["auc"]["value"] == pytest.approx(roc_auc_score(y, s))
    assert (out["num_members"], out["num_nonmembers"]) == (300, 300)
    json.dumps(out, allow_nan=False)


def test_recovered_gain_both_directions():
    assert recovered_gain(recovered=0.7, base=0.5, central=0.9, higher_is_better=True) == \
        pytest.approx(0.5)
    assert recovered_gain(recovered=2.5, base=3.0, central=2.0, higher_is_better=False) == 0.5
    assert recovered_gain(recovered=2.0, base=3.0, central=2.0, higher_is_better=False) == 1.0
    assert recovered_gain(recovered=3.0, base=3.0, central=2.0, higher_is_better=False) == 0.0
    assert recovered_gain(recovered=3.5, base=3.0, central=2.0, higher_is_better=False) == -0.5
    assert math.isnan(recovered_gain(recovered=1.0, base=2.0, central=2.0, higher_is_better=False))
    # central worse than base: no improvement to share
    assert math.isnan(recovered_gain(recovered=1.0, base=2.0, central=3.0, higher_is_better=False))
    with pytest.raises(ValueError, match="finite"):
        recovered_gain(recovered=1.0, base=math.inf, central=2.0, higher_is_better=False)


def test_param_rel_error_known_answers():
    w = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[4.0]])}  # joint norm 5
    assert param_rel_error(recovered=w, master=w) == 0.0
    zeros = {k: torch.zeros_like(v) for k, v in w.items()}
    assert param_rel_error(recovered=zeros, master=w) == 1.0
    off = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[1.0]], dtype=torch.bfloat16)}
    assert param_rel_error(recovered=off, master=w) == pytest.approx(0.6)  # 3 / 5
    assert math.isnan(param_rel_error(recovered=zeros, master=zeros))
    with pytest.raises(ValueError, match=r"missing from recovered \['b'\], extra \['c'\]"):
        param_rel_error(recovered={"a": w["a"], "c": w["b"]}, master=w)
    with pytest.raises(ValueError, match="shape of 'a'"):
        param_rel_error(recovered={"a": torch.zeros(3), "b": w["b"]}, master=w)


@pytest.mark.parametrize("scores, labels, match", [
    ([0.1, 0.2], [1, 0, 1], "differ in length"),
    ([0.1, 0.2], [1, 1], "both members and non-members"),
    ([0.1, float("nan")], [1, 0], "finite"),
    ([0.1, float("inf")], [1, 0], "finite"),
    ([0.1, 0.2], [1, 2], "0 or 1"),
    ([[0.1, 0.2]], [[1, 0]], "1-D"),
])
def test_input_validation(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        _check(scores, labels)
    with pytest.raises(ValueError, match=match):
        auc(scores=scores, labels=labels)


def test_argument_validation():
    with pytest.raises(ValueError, match="fpr must be in"):
        tpr_at_fpr(scores=SMALL_S, labels=SMALL_Y, fpr=1.5)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci(scores=SMALL_S, labels=SMALL_Y, metric=auc, resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(scores=SMALL_S, labels=SMALL_Y, metric=auc, level=1.0)
    with pytest.raises(ValueError, match="max_points"):
        roc_curve_points(scores=SMALL_S, labels=SMALL_Y, max_points=3)
    with pytest.raises(ValueError, match="empty"):
        calibration_check(nonmember_scores_a=[], nonmember_scores_b=[0.1])
