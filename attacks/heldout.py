"""Threshold metrics of membership inference, with every threshold chosen on held-out records.

A threshold picked on the records it is then scored on flatters a useless attack (the in-sample
``max TPR - FPR`` of random scores is about 0.2 at 24 + 24 records), so here a seeded split of
the records picks the threshold and the other part (and the members, which never pick it) is
counted. Convention as in :mod:`attacks.metrics`: higher score = more likely a member.
"""

import math

import numpy as np
from scipy.stats import beta

from attacks.metrics import LEVEL, ArrayLike, check_scores, interval, null_metric

LOW_FPRS = {"tpr@1%fpr": 0.01, "tpr@0.1%fpr": 0.001}
HELDOUT = (*LOW_FPRS, "advantage")  # the names heldout_metrics gives


def clopper_pearson(*, successes: int, trials: int, level: float = LEVEL) -> dict:
    """Exact binomial interval of ``successes / trials``.

    Returns:
        ``{"ci": [lo, hi], "lower": lb, "upper": ub}``: the two-sided interval of coverage
        ``level`` and the one-sided lower and upper bounds of coverage ``level`` each (what a
        claim "TPR is at least ..." or "FPR is at most ..." needs).
    """
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    alpha, k, n = 1.0 - level, successes, trials
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    lower = 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(level, k + 1, n - k))
    return {"ci": [lo, hi], "lower": lower, "upper": upper}


def seeded_split(*, n: int, first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)`` into ``first`` and ``n - first`` positions (also the
    calibration split of :func:`attacks.audit.epsilon_lower_bound`)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[:first], order[first:]


def tpr_at_fpr_heldout(*, scores: ArrayLike, labels: ArrayLike, fpr: float, seed: int = 0) -> dict:
    """TPR at a false-positive rate ``fpr`` whose threshold never saw the records it is scored on.

    Procedure:

    1. With ``N`` non-members, the value is null unless ``N >= ceil(1/fpr)`` (below that no
       threshold can be shown to have an FPR of ``fpr``).
    2. A seeded permutation splits the non-members into a calibration part of
       ``C = max(ceil(N/2), ceil(1/fpr) - 1)`` records and a held-out part of the other ``N - C``
       (at least one).
    3. With ``j = floor(fpr * (C + 1))`` (>= 1 by 1.), the threshold is the ``j``-th highest
       calibration score and a record is flagged a member when its score is *strictly above* it.
       For exchangeable non-members this is the conformal choice: a fresh non-member is flagged
       with probability at most ``j / (C + 1) <= fpr`` (ties only lower it).
    4. TPR = flagged members / members (members never pick the threshold); the realised FPR is
       counted on the held-out non-members. Both get Clopper-Pearson intervals (exact binomial,
       conditional on the threshold).

    Returns:
        ``{"value", "ci", "lower", "se": None, "reason", "fpr", "heldout_fpr": {"value", "ci"},
        "num_calibration", "num_heldout"}``: ``ci`` is the two-sided 95 % interval, ``lower`` the
        one-sided 95 % lower bound; null values with the reason when 1. fails.
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    s, y = check_scores(scores=scores, labels=labels)
    members, non = s[y == 1], s[y == 0]
    need = math.ceil(1.0 / fpr - 1e-9)
    if len(non) < need:
        return null_metric(f"needs >= {need} non-members, have {len(non)}") | {"lower": None,
                                                                               "fpr": fpr}
    calibrate, held = seeded_split(n=len(non), first=max(math.ceil(len(non) / 2), need - 1),
                                   seed=seed)
    rank = math.floor(fpr * (len(calibrate) + 1) + 1e-9)
    threshold = float(np.sort(non[calibrate])[::-1][rank - 1])
    hits, false_hits = int((members > threshold).sum()), int((non[held] > threshold).sum())
    tpr = clopper_pearson(successes=hits, trials=len(members))
    return {"value": hits / len(members), "ci": tpr["ci"], "lower": tpr["lower"], "se": None,
            "reason": None, "fpr": fpr,
            "heldout_fpr": {"value": false_hits / len(held),
                            "ci": clopper_pearson(successes=false_hits, trials=len(held))["ci"]},
            "num_calibration": len(calibrate), "num_heldout": len(held)}


def heldout_advantage(*, scores: ArrayLike, labels: ArrayLike, resamples: int = 1000,
                      seed: int = 0) -> dict:
    """Membership advantage TPR - FPR at a threshold chosen on the other half of the records.

    A seeded split halves the members and the non-members (selection part: ``floor(n/2)`` of
    each class). The threshold maximising TPR - FPR on the selection part (flag ``score >= t``;
    the highest such ``t`` on ties) is applied to the evaluation part, where TPR - FPR is the
    value: about 0 for a useless attack (it can be negative), never the in-sample maximum. The
    CI and standard error come from a stratified bootstrap of the evaluation part at that fixed
    threshold (binomial resampling of its two rates).

    Returns:
        ``{"value", "ci", "se", "reason", "threshold", "num_evaluated"}``; null with the reason
        when a class has fewer than 2 records.
    """
    s, y = check_scores(scores=scores, labels=labels)
    parts = {}
    for label in (1, 0):
        at = np.flatnonzero(y == label)
        if len(at) < 2:
            return null_metric(f"needs >= 2 records of each class, have {len(at)} "
                               f"{'members' if label else 'non-members'}")
        pick, rest = seeded_split(n=len(at), first=len(at) // 2, seed=seed + label)
        parts[label] = (np.sort(s[at[pick]]), s[at[rest]])
    (pos_pick, pos), (neg_pick, neg) = parts[1], parts[0]
    candidates = np.unique(np.r_[pos_pick, neg_pick])[::-1]  # selection scores, high to low

    def rate(sorted_scores: np.ndarray) -> np.ndarray:  # share >= each candidate
        return 1.0 - np.searchsorted(sorted_scores, candidates, side="left") / len(sorted_scores)

    threshold = float(candidates[int(np.argmax(rate(pos_pick) - rate(neg_pick)))])  # highest t
    tpr, fpr = float((pos >= threshold).mean()), float((neg >= threshold).mean())
    rng = np.random.default_rng(seed)
    values = (rng.binomial(len(pos), tpr, resamples) / len(pos)
              - rng.binomial(len(neg), fpr, resamples) / len(neg))
    return {"value": tpr - fpr, "ci": list(interval(values)),
            "se": float(np.std(values, ddof=1)) if resamples > 1 else None, "reason": None,
            "threshold": threshold, "num_evaluated": len(pos) + len(neg)}


def heldout_metrics(*, scores: ArrayLike, labels: ArrayLike, resamples: int = 1000,
                    seed: int = 0) -> dict[str, dict]:
    """``tpr@1%fpr``, ``tpr@0.1%fpr`` (:func:`tpr_at_fpr_heldout`) and ``advantage``
    (:func:`heldout_advantage`); the same ``seed`` gives an attack and its control the same
    splits of the same records."""
    out = {name: tpr_at_fpr_heldout(scores=scores, labels=labels, fpr=f, seed=seed)
           for name, f in LOW_FPRS.items()}
    return out | {"advantage": heldout_advantage(scores=scores, labels=labels,
                                                 resamples=resamples, seed=seed)}
