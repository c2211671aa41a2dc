"""The data-leakage metrics of one membership attack and its control, composed from their parts:
the ROC and AUC maths of :mod:`attacks.metrics`, the held-out threshold metrics of
:mod:`attacks.heldout` and the epsilon audit of :mod:`attacks.audit`.

It sits above all three and none of them imports it: each part stays usable, and testable, on
its own. Convention as in :mod:`attacks.metrics`: higher score = more likely a member.
"""

from attacks.audit import DEFAULT_DELTA, epsilon_lower_bound
from attacks.heldout import HELDOUT, heldout_metrics
from attacks.metrics import ArrayLike, auc_with_control, check_scores, null_metric, roc_curve_points


def membership_metrics(*, scores: ArrayLike, labels: ArrayLike,
                       control_scores: ArrayLike | None = None,
                       control_reason: str = "no control scores", resamples: int = 1000,
                       seed: int = 0, delta: float | None = None) -> dict:
    """All data-leakage metrics of one attack and its control, in the project's vocabulary.

    Args:
        delta: the delta of ``epsilon_lb`` (the DP accountant's, to compare with its epsilon);
            None = :data:`attacks.audit.DEFAULT_DELTA`.

    Returns:
        JSON-able: ``auc``, ``control_auc``, ``auc_minus_control``
        (:func:`attacks.metrics.auc_with_control`); ``tpr@1%fpr``, ``tpr@0.1%fpr`` and
        ``advantage`` on held-out thresholds (:mod:`attacks.heldout`); ``epsilon_lb``, the
        auditor's lower bound on epsilon at ``delta`` (:func:`attacks.audit.epsilon_lower_bound`);
        ``control``: those four on ``control_scores`` (same splits); ``num_members``,
        ``num_nonmembers``, ``min_fpr`` (1 / non-members: the lowest FPR the sample resolves),
        ``resamples`` and ``roc`` (the attack's curve, for plots).
    """
    delta = DEFAULT_DELTA if delta is None else delta
    s, y = check_scores(scores=scores, labels=labels)
    if control_scores is not None:
        control_scores, _ = check_scores(scores=control_scores, labels=y)
    out = auc_with_control(scores=s, labels=y, control_scores=control_scores,
                           control_reason=control_reason, resamples=resamples, seed=seed)
    out |= heldout_metrics(scores=s, labels=y, resamples=resamples, seed=seed)
    out["epsilon_lb"] = epsilon_lower_bound(scores=s, labels=y, delta=delta, seed=seed)
    if control_scores is None:
        out["control"] = {name: null_metric(control_reason) for name in (*HELDOUT, "epsilon_lb")}
    else:
        out["control"] = heldout_metrics(scores=control_scores, labels=y, resamples=resamples,
                                         seed=seed)
        out["control"]["epsilon_lb"] = epsilon_lower_bound(scores=control_scores, labels=y,
                                                           delta=delta, seed=seed)
    num_nonmembers = int(len(y) - y.sum())
    return out | {"num_members": int(y.sum()), "num_nonmembers": num_nonmembers,
                  "min_fpr": 1.0 / num_nonmembers, "resamples": resamples,
                  "roc": roc_curve_points(scores=s, labels=y)}
