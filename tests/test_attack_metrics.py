"""Known-answer tests of the membership metrics (hand-built arrays, sklearn as the reference)."""

import functools
import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from attacks.heldout import clopper_pearson, heldout_advantage, tpr_at_fpr_heldout
from attacks.leakage import membership_metrics
from attacks.metrics import (
    _batched,
    auc,
    auc_with_control,
    bootstrap_ci,
    check_scores,
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


@pytest.mark.parametrize("metric", [auc, functools.partial(tpr_at_fpr, fpr=0.05)])
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


@pytest.mark.parametrize("metric", [auc, functools.partial(tpr_at_fpr, fpr=0.01)])
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


def test_auc_hand_built():
    assert auc(scores=SMALL_S, labels=SMALL_Y) == 11 / 16  # member-beats-non-member pairs
    assert auc(scores=[1, 1, 1, 1], labels=[1, 0, 1, 0]) == 0.5


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


def test_membership_metrics_vocabulary_and_json():
    s, y = _gaussian(300, 1.0, seed=7)
    out = membership_metrics(scores=s, labels=y, control_scores=s[::-1].copy(), resamples=200)
    for name in ("auc", "control_auc", "auc_minus_control", "advantage"):
        lo, hi = out[name]["ci"]
        assert lo <= out[name]["value"] <= hi and out[name]["se"] > 0, name
    assert out["auc"]["value"] == pytest.approx(roc_auc_score(y, s))
    assert out["tpr@1%fpr"]["value"] is not None  # 300 non-members resolve 1 %
    assert out["tpr@0.1%fpr"]["reason"] == "needs >= 1000 non-members, have 300"
    assert set(out["control"]) == {"tpr@1%fpr", "tpr@0.1%fpr", "advantage", "epsilon_lb"}
    assert out["epsilon_lb"]["value"] > 0 and out["epsilon_lb"]["delta"] == 1e-5
    assert out["control"]["epsilon_lb"]["value"] is not None
    assert (out["num_members"], out["num_nonmembers"], out["resamples"]) == (300, 300, 200)
    assert out["min_fpr"] == 1 / 300
    json.dumps(out, allow_nan=False)


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
        check_scores(scores=scores, labels=labels)
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


# --- the control, paired -----------------------------------------------------------------------
def test_difference_to_an_identical_control_is_exactly_zero_because_the_bootstrap_is_paired():
    s, y = _gaussian(200, 0.8, seed=10)
    out = auc_with_control(scores=s, labels=y, control_scores=s.copy(), resamples=300)
    assert out["auc_minus_control"] == {"value": 0.0, "ci": [0.0, 0.0], "se": 0.0,
                                        "reason": None}
    assert out["control_auc"]["value"] == out["auc"]["value"]
    assert out["auc"]["se"] > 0.01  # each AUC alone is uncertain; their paired difference not


def test_difference_ci_is_narrower_than_two_independent_aucs_and_sees_training_leakage():
    rng = np.random.default_rng(11)
    difficulty = rng.normal(size=600)  # what record selection alone gives: shared by both models
    y = np.r_[np.ones(300), np.zeros(300)]
    control = difficulty + 0.3 * y
    trained = difficulty + 0.3 * y + 0.4 * y + 0.1 * rng.normal(size=600)
    out = auc_with_control(scores=trained, labels=y, control_scores=control, resamples=500)
    diff = out["auc_minus_control"]
    assert diff["value"] == pytest.approx(out["auc"]["value"] - out["control_auc"]["value"])
    assert diff["ci"][0] > 0  # leakage attributable to training, beyond the control
    assert diff["se"] < 0.5 * math.hypot(out["auc"]["se"], out["control_auc"]["se"])


def test_missing_control_is_null_with_its_reason():
    s, y = _gaussian(50, 1.0, seed=12)
    out = membership_metrics(scores=s, labels=y, control_scores=None, control_reason="no control",
                             resamples=50)
    for name in ("control_auc", "auc_minus_control"):
        assert out[name] == {"value": None, "ci": None, "se": None, "reason": "no control"}
    assert all(m["reason"] == "no control" for m in out["control"].values())
    json.dumps(out, allow_nan=False)
    with pytest.raises(ValueError, match="differ in length"):
        membership_metrics(scores=s, labels=y, control_scores=s[:-1], resamples=10)


# --- a useless attack leaks nothing --------------------------------------------------------------
@pytest.mark.parametrize("n", [24, 2000])
def test_random_scores_give_auc_ci_around_half_and_heldout_advantage_around_zero(n):
    rng = np.random.default_rng(13)
    s, y = rng.random(2 * n), np.r_[np.ones(n), np.zeros(n)]
    out = membership_metrics(scores=s, labels=y, resamples=1000)
    lo, hi = out["auc"]["ci"]
    assert lo <= 0.5 <= hi
    lo, hi = out["advantage"]["ci"]
    assert lo <= 0.0 <= hi
    assert abs(out["advantage"]["value"]) < (0.35 if n == 24 else 0.05)
    if n == 24:  # what the old in-sample maximum of TPR - FPR claimed on the same data
        fpr, tpr, _ = roc_curve(y, s)
        assert (tpr - fpr).max() > 0.15


def test_heldout_advantage_known_answers():
    y = np.r_[np.ones(10), np.zeros(10)]
    separable = heldout_advantage(scores=np.r_[np.arange(10) + 100.0, np.arange(10)], labels=y)
    assert (separable["value"], separable["ci"], separable["num_evaluated"]) == (1.0, [1.0, 1.0], 10)
    flat = heldout_advantage(scores=np.ones(20), labels=y)
    assert (flat["value"], flat["ci"]) == (0.0, [0.0, 0.0])
    few = heldout_advantage(scores=[0.3, 0.2, 0.1], labels=[1, 0, 0])
    assert few["value"] is None and few["reason"] == "needs >= 2 records of each class, have 1 members"


# --- TPR at low FPR ------------------------------------------------------------------------------
def test_clopper_pearson_known_answers():
    zero = clopper_pearson(successes=0, trials=10)
    assert zero["ci"][0] == 0.0 and zero["ci"][1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert zero["lower"] == 0.0
    full = clopper_pearson(successes=10, trials=10)
    assert full["ci"] == [pytest.approx(0.025 ** (1 / 10)), 1.0]
    assert full["lower"] == pytest.approx(0.05 ** (1 / 10))  # one-sided bound: alpha, not alpha/2
    assert (zero["upper"], full["upper"]) == (pytest.approx(1 - 0.05 ** (1 / 10)), 1.0)
    half = clopper_pearson(successes=5, trials=10)
    assert half["ci"] == [pytest.approx(0.187086, abs=1e-6), pytest.approx(0.812914, abs=1e-6)]
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson(successes=3, trials=2)


def test_low_fpr_is_null_below_one_over_fpr_nonmembers():
    s, y = _gaussian(24, 1.0, seed=14)
    out = membership_metrics(scores=s, labels=y, control_scores=s, resamples=20)
    for name, need in (("tpr@1%fpr", 100), ("tpr@0.1%fpr", 1000)):
        for metric in (out[name], out["control"][name]):
            assert metric["value"] is None and metric["ci"] is None
            assert metric["reason"] == f"needs >= {need} non-members, have 24"
    rng = np.random.default_rng(14)
    for nonmembers, defined in ((99, False), (100, True)):
        out = tpr_at_fpr_heldout(scores=rng.random(24 + nonmembers),
                                 labels=np.r_[np.ones(24), np.zeros(nonmembers)], fpr=0.01)
        assert (out["value"] is not None) == defined, nonmembers


def test_low_fpr_threshold_comes_from_calibration_nonmembers_only():
    # 200 non-members all at 0: any calibration part puts the threshold at 0 (flag > 0)
    s = np.r_[[1.0, 1.0, 1.0, 0.0], np.zeros(200)]
    y = np.r_[np.ones(4), np.zeros(200)]
    out = tpr_at_fpr_heldout(scores=s, labels=y, fpr=0.01)
    assert (out["value"], out["num_calibration"], out["num_heldout"]) == (0.75, 100, 100)
    assert out["heldout_fpr"]["value"] == 0.0
    assert out["ci"] == clopper_pearson(successes=3, trials=4)["ci"]
    # with exactly 1/fpr non-members, 99 calibrate (rank floor(0.01 * 100) = 1) and 1 is held out
    edge = tpr_at_fpr_heldout(scores=np.r_[[1.0], np.arange(100.0)], labels=np.r_[1, np.zeros(100)],
                              fpr=0.01)
    assert (edge["num_calibration"], edge["num_heldout"]) == (99, 1)


@pytest.mark.parametrize("fpr", [0.01, 0.001])
def test_random_scores_give_tpr_near_the_fpr_with_an_interval_covering_it(fpr):
    rng = np.random.default_rng(15)
    n = 20_000
    out = tpr_at_fpr_heldout(scores=rng.random(2 * n), labels=np.r_[np.ones(n), np.zeros(n)],
                             fpr=fpr, seed=0)
    # the threshold's true FPR varies by ~sqrt(fpr / 10,000 calibration records) around fpr
    assert out["value"] == pytest.approx(fpr, abs=4 * math.sqrt(fpr / 10_000))
    assert out["ci"][0] <= fpr <= out["ci"][1] and out["lower"] <= fpr
    assert out["heldout_fpr"]["ci"][0] <= fpr <= out["heldout_fpr"]["ci"][1]
