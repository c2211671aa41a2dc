"""An auditor's empirical lower bound on epsilon from a membership attack's scores.

For an (eps, delta)-DP mechanism every membership test has (Kairouz et al. 2015)

    FPR + e^eps * FNR >= 1 - delta   and   FNR + e^eps * FPR >= 1 - delta,

so upper confidence bounds on a test's FPR and FNR give a lower bound on eps that holds with the
bounds' confidence. That is what :func:`epsilon_lower_bound` reports: the auditor's ``epsilon_lb``
to set beside an accountant's ``epsilon`` at the same ``delta``. A bound above the accountant's
epsilon means the accounting (or the implementation) is wrong.

What it assumes: the counted records are independent trials of the test, i.e. whether a record
is a member is decided at random, independently of the record (a split where members and
non-members differ in kind measures that difference, not the training; the control, the same
bound on the untrained model's scores, shows it). The bound is about the unit the records are:
per record, not per client.

Convention as in :mod:`attacks.metrics`: higher score = more likely a member.
"""

import math

import numpy as np
from scipy.stats import beta

from attacks.heldout import clopper_pearson, seeded_split
from attacks.metrics import LEVEL, ArrayLike, check_scores, null_metric

DEFAULT_DELTA = 1e-5  # used when the run's defenses state no delta


def _validate(*, delta: float, level: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _upper(errors: np.ndarray, trials: int, level: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bounds of ``errors / trials`` (vectorised; the same
    numbers as ``clopper_pearson(...)["upper"]``)."""
    k = np.asarray(errors, dtype=np.float64)
    return np.where(k >= trials, 1.0, beta.ppf(level, k + 1, np.maximum(trials - k, 1)))


def _bound(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """``max(0, ln((1-delta-fnr)/fpr), ln((1-delta-fpr)/fnr))``, a term with a non-positive
    numerator skipped (rates > 0, as Clopper-Pearson upper bounds are)."""
    out = np.zeros(np.broadcast(fpr, fnr).shape)
    for top, bottom in ((1.0 - delta - fnr, fpr), (1.0 - delta - fpr, fnr)):
        ok = top > 0
        term = np.log(np.where(ok, top, 1.0) / bottom)
        out = np.maximum(out, np.where(ok, term, 0.0))
    return out


def _errors(members: np.ndarray, non: np.ndarray, t: np.ndarray,
            above: bool) -> tuple[np.ndarray, np.ndarray]:
    """(false positives, false negatives) of "member iff score > t" (``above``) or "member iff
    score < t" at each threshold in ``t``; ``members`` and ``non`` sorted."""
    if above:
        return (len(non) - np.searchsorted(non, t, side="right"),
                np.searchsorted(members, t, side="right"))
    return np.searchsorted(non, t, side="left"), len(members) - np.searchsorted(members, t,
                                                                                 side="left")


def _short_class(labels: np.ndarray) -> str | None:
    """Why the bound cannot be computed (a class with fewer than 2 records), else None; members
    are named first when both are short."""
    for label, name in ((1, "members"), (0, "non-members")):
        count = int((labels == label).sum())
        if count < 2:
            return f"needs >= 2 records of each class, have {count} {name}"
    return None


def _calibration_split(*, scores: np.ndarray, labels: np.ndarray, seed: int
                       ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Step 1 of :func:`epsilon_lower_bound`: ``((calibration, counted), (calibration,
    counted))`` sorted scores of the members, then of the non-members."""
    parts = {}
    for label in (1, 0):
        at = np.flatnonzero(labels == label)
        # seed + label: each class its own permutation (the halves heldout_advantage uses too)
        pick, rest = seeded_split(n=len(at), first=len(at) // 2, seed=seed + label)
        parts[label] = (np.sort(scores[at[pick]]), np.sort(scores[at[rest]]))
    return parts[1], parts[0]


def _pick_threshold(*, members: np.ndarray, non: np.ndarray, delta: float,
                    rate_level: float) -> tuple[float, bool]:
    """Step 2 of :func:`epsilon_lower_bound`: the (threshold, above) whose bound on the sorted
    calibration scores ``members`` and ``non`` is highest (the first one on ties, "above"
    before "below")."""
    distinct = np.unique(np.r_[members, non])
    candidates = (distinct[:-1] + distinct[1:]) / 2 if len(distinct) > 1 else distinct
    best = (-1.0, 0.0, True)
    for above in (True, False):
        fp, fn = _errors(members, non, candidates, above)
        values = _bound(_upper(fp, len(non), rate_level), _upper(fn, len(members), rate_level),
                        delta)
        i = int(np.argmax(values))
        if values[i] > best[0]:
            best = (float(values[i]), float(candidates[i]), above)
    _, threshold, above = best
    return threshold, above


def _counted_bound(*, members: np.ndarray, non: np.ndarray, threshold: float, above: bool,
                   delta: float, rate_level: float) -> dict:
    """Steps 3 and 4 of :func:`epsilon_lower_bound` on the sorted counted scores: ``{"value",
    "false_positives", "false_negatives", "fpr_hi", "fnr_hi"}``."""
    fp, fn = (int(e[0]) for e in _errors(members, non, np.array([threshold]), above))
    fpr_hi = clopper_pearson(successes=fp, trials=len(non), level=rate_level)["upper"]
    fnr_hi = clopper_pearson(successes=fn, trials=len(members), level=rate_level)["upper"]
    return {"value": float(_bound(np.float64(fpr_hi), np.float64(fnr_hi), delta)),
            "false_positives": fp, "false_negatives": fn, "fpr_hi": fpr_hi, "fnr_hi": fnr_hi}


def epsilon_lower_bound(*, scores: ArrayLike, labels: ArrayLike, delta: float,
                        level: float = LEVEL, seed: int = 0) -> dict:
    """Empirical lower bound on the epsilon of an (eps, delta)-DP training, from one attack.

    Procedure:

    1. A seeded permutation of each class puts ``floor(n/2)`` members and ``floor(n/2)``
       non-members in a calibration part; the rest is counted.
    2. On the calibration part, every threshold midway between two consecutive distinct scores,
       in both directions ("member iff score above" and "below"), is scored by the bound of step
       4 computed on the calibration counts; the best one is kept. (The point-estimate bound is
       infinite at zero false positives, so it would pick the most extreme threshold, which
       counts worst on fresh records.)
    3. On the counted part, FPR_hi and FNR_hi are one-sided Clopper-Pearson upper bounds of the
       counted false-positive and false-negative rates, each at ``1 - (1 - level) / 2``, so
       both hold together with probability at least ``level`` (union bound; given the
       threshold, which never saw these records).
    4. ``value = max(0, ln((1-delta-FNR_hi)/FPR_hi), ln((1-delta-FPR_hi)/FNR_hi))``, a term
       with a non-positive numerator skipped: eps is at least ``value`` with probability at
       least ``level``.

    Args:
        scores, labels: as in :mod:`attacks.metrics` (higher = more likely a member).
        delta: the mechanism's delta, in [0, 1) (the accountant's, to compare with its epsilon).
        level: confidence of the bound, in (0, 1).
        seed: seeds the calibration split.

    Returns:
        JSON-able ``{"value", "ci": None, "se": None, "reason", "delta", "level",
        "threshold", "direction" ("above" / "below"), "threshold_split": {"members",
        "nonmembers"} (calibration sizes), "counted": {"members", "nonmembers"},
        "false_positives", "false_negatives", "fpr_hi", "fnr_hi"}``; the numbers null, with
        the reason, when a class has fewer than 2 records.
    """
    _validate(delta=delta, level=level)
    s, y = check_scores(scores=scores, labels=labels)
    out = {"delta": delta, "level": level, "threshold": None, "direction": None,
           "threshold_split": None, "counted": None, "false_positives": None,
           "false_negatives": None, "fpr_hi": None, "fnr_hi": None}
    reason = _short_class(y)
    if reason is not None:
        return null_metric(reason) | out
    (pos_pick, pos), (neg_pick, neg) = _calibration_split(scores=s, labels=y, seed=seed)
    # Each rate's bound at 1 - (1 - level) / 2, so both hold together at ``level`` (union bound).
    rate_level = 1.0 - (1.0 - level) / 2
    threshold, above = _pick_threshold(members=pos_pick, non=neg_pick, delta=delta,
                                       rate_level=rate_level)
    counted = _counted_bound(members=pos, non=neg, threshold=threshold, above=above,
                             delta=delta, rate_level=rate_level)
    value = counted.pop("value")
    # Merged over ``out``, the keys keep the order of the null result above.
    return {"value": value, "ci": None, "se": None, "reason": None} | out | {
        "threshold": threshold, "direction": "above" if above else "below",
        "threshold_split": {"members": len(pos_pick), "nonmembers": len(neg_pick)},
        "counted": {"members": len(pos), "nonmembers": len(neg)}} | counted


def one_run_epsilon_lower_bound(*, guesses: int, correct: int, level: float = LEVEL) -> dict:
    """Pure-DP (delta = 0) lower bound of the one-run audit of Steinke, Nasr and Jagielski
    (NeurIPS 2023).

    Setting: each of ``m`` audit records was put in the training data by an independent fair
    coin; after one training run the attacker guesses in or out for ``guesses`` of them (which
    ones and how many fixed without looking at the coins) and ``correct`` guesses are right.
    Under eps-DP the number correct is stochastically dominated by
    ``Binomial(guesses, e^eps / (1 + e^eps))``, so the bound is the largest eps with
    ``P[Binomial(guesses, e^eps / (1 + e^eps)) >= correct] <= 1 - level``. That tail is the
    regularised incomplete beta ``I_p(correct, guesses - correct + 1)``, increasing in ``p``,
    so ``p`` is the one-sided Clopper-Pearson lower bound of ``correct / guesses`` at
    ``level`` and the bound is ``max(0, ln(p / (1 - p)))``. Not valid for delta > 0 (the paper
    gives a separate, weaker bound there).

    Returns:
        ``{"value", "ci": None, "se": None, "reason", "level", "guesses", "correct"}``; null
        with the reason when there are no guesses.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 0 <= correct <= guesses:
        raise ValueError(f"need 0 <= correct <= guesses, got {correct} of {guesses}")
    out = {"level": level, "guesses": guesses, "correct": correct}
    if guesses == 0:
        return null_metric("no guesses") | out
    p = clopper_pearson(successes=correct, trials=guesses, level=level)["lower"]
    value = 0.0 if p <= 0.5 else math.log(p / (1.0 - p))  # p < 1 for finite guesses
    return {"value": value, "ci": None, "se": None, "reason": None} | out
