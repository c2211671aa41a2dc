"""Known-answer tests of the auditor's epsilon lower bound (randomized response has a known
epsilon; a perfectly separating attack is limited only by the number of records)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import binom

from attacks.audit import epsilon_lower_bound, one_run_epsilon_lower_bound
from attacks.heldout import clopper_pearson


def _randomized_response(n: int, eps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` records, half members: a member's score is 1 with probability e^eps/(1+e^eps), a
    non-member's with 1/(1+e^eps); thresholding it is an eps-DP test, and a tight one."""
    rng = np.random.default_rng(seed)
    p = math.exp(eps) / (1 + math.exp(eps))
    y = np.r_[np.ones(n // 2), np.zeros(n - n // 2)].astype(int)
    s = np.where(y == 1, rng.random(n) < p, rng.random(n) < 1 - p).astype(float)
    return s, y


@pytest.mark.parametrize("eps", [1.0, 2.0])
def test_bound_on_randomized_response_rarely_exceeds_the_true_epsilon(eps):
    values = [epsilon_lower_bound(scores=s, labels=y, delta=0.0, level=0.95, seed=seed)["value"]
              for seed in range(200) for s, y in [_randomized_response(1000, eps, seed)]]
    # level 0.95: at most 5 % of seeds (10 of 200) may exceed; about 1 % do
    assert sum(v > eps for v in values) <= 10
    assert np.mean(values) > 0.5 * eps  # and it is not vacuous


def test_bound_on_randomized_response_approaches_the_true_epsilon_with_many_records():
    s, y = _randomized_response(200_000, 1.0, seed=1)
    out = epsilon_lower_bound(scores=s, labels=y, delta=1e-5)
    assert 0.9 <= out["value"] <= 1.0
    assert out["counted"] == {"members": 50_000, "nonmembers": 50_000}
    assert out["threshold_split"] == {"members": 50_000, "nonmembers": 50_000}
    assert out["direction"] == "above" and 0.0 < out["threshold"] < 1.0


def test_random_scores_give_a_bound_of_zero():
    y = np.r_[np.ones(1000), np.zeros(1000)]
    for seed in range(10):
        s = np.random.default_rng(seed).random(2000)
        assert epsilon_lower_bound(scores=s, labels=y, delta=1e-5, seed=seed)["value"] < 0.05


@pytest.mark.parametrize("flip", [False, True])
def test_perfect_separation_gives_a_finite_bound_set_by_the_number_of_records(flip):
    rng = np.random.default_rng(0)
    s = np.r_[10 + rng.random(100), rng.random(100)]  # 100 members far above 100 non-members
    y = np.r_[np.ones(100), np.zeros(100)]
    delta = 1e-5
    out = epsilon_lower_bound(scores=-s if flip else s, labels=y, delta=delta, level=0.95)
    # 50 + 50 records counted, no error; each rate bounded at 1 - 0.05 / 2 (union bound):
    # P[0 errors of 50] = (1 - r)^50 = 0.025  =>  r_hi = 1 - 0.025^(1/50)
    rate_hi = 1 - 0.025 ** (1 / 50)
    assert (out["false_positives"], out["false_negatives"]) == (0, 0)
    assert out["fpr_hi"] == pytest.approx(rate_hi) and out["fnr_hi"] == pytest.approx(rate_hi)
    assert out["value"] == pytest.approx(math.log((1 - delta - rate_hi) / rate_hi))  # 2.569
    assert out["direction"] == ("below" if flip else "above")
    json.dumps(out, allow_nan=False)


def test_a_larger_delta_gives_a_smaller_bound():
    s, y = _randomized_response(4000, 2.0, seed=3)
    values = [epsilon_lower_bound(scores=s, labels=y, delta=d)["value"] for d in (0.0, 0.1, 0.5)]
    assert values[0] > values[1] > values[2] >= 0.0


def test_identical_scores_give_zero():
    out = epsilon_lower_bound(scores=np.zeros(20), labels=np.r_[np.ones(10), np.zeros(10)],
                              delta=1e-5)
    assert out["value"] == 0.0 and out["reason"] is None


def test_fewer_than_two_records_of_a_class_is_null_with_a_reason():
    out = epsilon_lower_bound(scores=[0.9, 0.1, 0.2, 0.3], labels=[1, 0, 0, 0], delta=1e-5)
    assert out["value"] is None and out["reason"] == "needs >= 2 records of each class, have 1 members"
    assert out["delta"] == 1e-5 and out["fpr_hi"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 1.0}, r"delta must be in \[0, 1\), got 1.0"),
    ({"delta": -0.1}, r"delta must be in \[0, 1\), got -0.1"),
    ({"delta": 1e-5, "level": 1.0}, r"level must be in \(0, 1\), got 1.0"),
    ({"delta": 1e-5, "level": 0.0}, r"level must be in \(0, 1\), got 0.0"),
])
def test_bad_delta_or_level_is_a_one_line_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        epsilon_lower_bound(scores=[0.1, 0.2, 0.3, 0.4], labels=[1, 1, 0, 0], **kwargs)


def test_clopper_pearson_upper_bound_of_zero_and_all_successes():
    assert clopper_pearson(successes=0, trials=50, level=0.9)["upper"] == pytest.approx(
        1 - 0.1 ** (1 / 50))
    assert clopper_pearson(successes=50, trials=50)["upper"] == 1.0
    # the upper bound is where the binomial tail below the count is 1 - level
    up = clopper_pearson(successes=7, trials=40, level=0.95)["upper"]
    assert binom.cdf(7, 40, up) == pytest.approx(0.05)


def test_one_run_audit_with_every_guess_right():
    # P[Binomial(100, p) >= 100] = p^100 = 0.05  =>  p = 0.05^(1/100), eps = ln(p / (1 - p))
    p = 0.05 ** (1 / 100)
    out = one_run_epsilon_lower_bound(guesses=100, correct=100, level=0.95)
    assert out["value"] == pytest.approx(math.log(p / (1 - p)))  # 3.493


def test_one_run_audit_matches_the_binomial_tail_it_is_defined_by():
    out = one_run_epsilon_lower_bound(guesses=1000, correct=700, level=0.95)
    lo, hi = 0.0, 5.0  # bisect the largest eps with P[Binomial >= 700] <= 0.05
    for _ in range(60):
        mid = (lo + hi) / 2
        p = math.exp(mid) / (1 + math.exp(mid))
        lo, hi = (mid, hi) if binom.sf(699, 1000, p) <= 0.05 else (lo, mid)
    assert out["value"] == pytest.approx(lo, abs=1e-6)
    assert one_run_epsilon_lower_bound(guesses=1000, correct=520)["value"] == 0.0  # chance
    assert one_run_epsilon_lower_bound(guesses=0, correct=0)["reason"] == "no guesses"
    with pytest.raises(ValueError, match="need 0 <= correct <= guesses, got 3 of 2"):
        one_run_epsilon_lower_bound(guesses=2, correct=3)
