"""Membership-inference metrics as pure functions: input checks, ROC, AUC with its bootstrap CI
and standard error, and the paired difference to a control. The held-out threshold metrics are
:mod:`attacks.heldout`, the epsilon audit :mod:`attacks.audit`; :mod:`attacks.leakage` puts all
three together.

Convention: ``scores`` higher = more likely a member; ``labels`` 1 = member, 0 = non-member.
A number the data cannot give is ``None`` beside a ``reason`` string, never NaN.
"""

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

ArrayLike = np.ndarray | Sequence[float]
Metric = Callable[..., float]  # called as metric(scores=..., labels=...)
LEVEL = 0.95  # coverage of every interval reported


def check_scores(*, scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 scores, int labels) or raise a one-line ValueError naming the problem.

    The input check of every metric here and in :mod:`attacks.heldout` and :mod:`attacks.audit`.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if len(s) != len(y):
        raise ValueError(f"scores and labels differ in length: {len(s)} vs {len(y)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(y.tolist()))[:5]}")
    y = y.astype(np.int64)
    if y.min(initial=1) != 0 or y.max(initial=0) != 1:
        raise ValueError(f"need both members and non-members, got {int(y.sum())} members of {len(y)}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite, got {int((~np.isfinite(s)).sum())} NaN/inf values")
    return s, y


def _full_roc(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # drop_intermediate=False: sklearn's default drops collinear points, including diagonal ones
    # made by ties, which would change the step-function reading of TPR at a given FPR.
    return roc_curve(y, s, drop_intermediate=False)


def _max_false_positives(fpr: float, num_nonmembers: int) -> int:
    # Compare integer counts, not float rates: 0.01 * 100 must allow exactly 1 false positive.
    return math.floor(fpr * num_nonmembers + 1e-9)


def roc_curve_points(*, scores: ArrayLike, labels: ArrayLike, max_points: int = 500) -> dict:
    """ROC curve as JSON-able lists, for plotting.

    Args:
        scores, labels: as everywhere in this module.
        max_points: keep at most this many points (>= 8). Thinning keeps both ends of every
            vertical step it samples, on a log-spaced FPR grid (for log-log low-FPR plots), a
            linear grid, and exactly at FPR 0.1% and 1%, so those readings are unchanged.

    Returns:
        ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``; the first point is (0, 0) with
        threshold ``max(scores) + 1`` in place of sklearn's ``inf`` (nothing flagged a member).
    """
    if max_points < 8:
        raise ValueError(f"max_points must be >= 8, got {max_points}")
    s, y = check_scores(scores=scores, labels=labels)
    fpr, tpr, thr = _full_roc(s, y)
    thr[0] = s.max() + 1.0
    if len(fpr) > max_points:
        grid = (max_points - 2) // 2 - 2  # each target keeps up to two points; +2 exact targets
        floor = max(fpr[fpr > 0].min(), 1e-6)
        targets = np.concatenate([[1e-3, 1e-2], np.geomspace(floor, 1.0, grid - grid // 2),
                                  np.linspace(0.0, 1.0, grid // 2)])
        top = np.searchsorted(fpr, targets, side="right") - 1  # highest TPR at FPR <= target
        bottom = np.searchsorted(fpr, fpr[top], side="left")  # where that vertical step starts
        keep = np.unique(np.concatenate([[0, len(fpr) - 1], top, bottom]))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def auc(*, scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half); equals ``sklearn.metrics.roc_auc_score``."""
    s, y = check_scores(scores=scores, labels=labels)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(*, scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Highest TPR over thresholds whose FPR *on the same data* is at most ``fpr``.

    This reads the ROC curve (a step function, no interpolation, as in Carlini et al. S&P 2022);
    the threshold is picked on the data it is scored on, so it is for plots and tests only. The
    reported TPR at low FPR is :func:`attacks.heldout.tpr_at_fpr_heldout`.

    Args:
        scores, labels: as everywhere in this module.
        fpr: the false-positive-rate budget, in [0, 1].
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s, y = check_scores(scores=scores, labels=labels)
    rates_fp, rates_tp, _ = _full_roc(s, y)
    num_nonmembers = int(len(y) - y.sum())
    allowed = np.rint(rates_fp * num_nonmembers) <= _max_false_positives(fpr, num_nonmembers)
    return float(rates_tp[allowed].max())  # the (0, 0) point is always allowed


# --- bootstrap ------------------------------------------------------------------------------
# A resample is summarised by how many members / non-members it holds at each distinct score
# (sorted high to low), so a metric is a few cumulative sums over a (resamples x distinct
# scores) matrix: 1000 resamples cost one bincount instead of 1000 sklearn calls.

def _batched(metric: Metric) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The vectorised twin of :func:`auc` or ``partial(tpr_at_fpr, fpr=x)``, else None."""
    if metric is auc:
        def batch(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
            neg_below = neg.sum(1, keepdims=True) - np.cumsum(neg, 1)  # strictly lower scores
            return (pos * (neg_below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))
        return batch
    if (isinstance(metric, functools.partial) and metric.func is tpr_at_fpr and not metric.args
            and set(metric.keywords) == {"fpr"}):
        budget = float(metric.keywords["fpr"])

        def batch(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
            allowed = np.cumsum(neg, 1) <= _max_false_positives(budget, int(neg[0].sum()))
            return np.where(allowed, np.cumsum(pos, 1), 0).max(1) / pos.sum(1)
        return batch
    return None


def bootstrap_values(*, scores: Sequence[ArrayLike], labels: ArrayLike, metric: Metric,
                     resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``metric`` on stratified bootstrap resamples, the same resamples for every score array.

    Members and non-members are resampled separately (each resample keeps both classes and the
    class sizes). Giving several score arrays of the same records (an attack and its control)
    makes a *paired* bootstrap: resample ``b`` draws the same records for each of them.

    Returns:
        Array of shape ``(len(scores), resamples)``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    checked = [check_scores(scores=s, labels=labels) for s in scores]
    y = checked[0][1]
    pos_at, neg_at = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng, batch = np.random.default_rng(seed), _batched(metric)
    codes = [np.unique(-s, return_inverse=True)[1] for s, _ in checked]  # highest score first
    values: list[list[float]] = [[] for _ in checked]
    chunk = max(1, 4_000_000 // len(y))  # resamples per pass, bounding memory to ~100 MB
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        ip = pos_at[rng.integers(0, len(pos_at), (rows, len(pos_at)))]
        ineg = neg_at[rng.integers(0, len(neg_at), (rows, len(neg_at)))]
        for out, (s, _), code in zip(values, checked, codes, strict=True):
            if batch is None:
                out += [metric(scores=np.r_[s[a], s[b]], labels=np.r_[np.ones(len(a)),
                                                                      np.zeros(len(b))])
                        for a, b in zip(ip, ineg, strict=True)]
                continue
            width = code.max() + 1
            offset = width * np.arange(rows)[:, None]  # each resample its own bincount range
            pos = np.bincount((code[ip] + offset).ravel(), minlength=rows * width)
            neg = np.bincount((code[ineg] + offset).ravel(), minlength=rows * width)
            out += batch(pos.reshape(-1, width), neg.reshape(-1, width)).tolist()
    return np.asarray(values, dtype=np.float64)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values``: the (1 -/+ level)/2 quantiles."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(*, scores: ArrayLike, labels: ArrayLike, metric: Metric, resamples: int = 1000,
                 level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile stratified-bootstrap interval of ``metric`` (see :func:`bootstrap_values`).

    ``auc`` and ``functools.partial(tpr_at_fpr, fpr=x)`` run vectorised; any other
    ``metric(scores=..., labels=...)`` is called per resample on the same resamples.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = bootstrap_values(scores=[scores], labels=labels, metric=metric,
                              resamples=resamples, seed=seed)[0]
    return interval(values, level)


def _estimate(value: float, values: np.ndarray) -> dict:
    """``{"value", "ci", "se", "reason": None}`` from a point estimate and its bootstrap."""
    se = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"value": value, "ci": list(interval(values)), "se": se, "reason": None}


def null_metric(reason: str) -> dict:
    """A metric the data cannot give: every number null, and why."""
    return {"value": None, "ci": None, "se": None, "reason": reason}


def auc_with_control(*, scores: ArrayLike, labels: ArrayLike,
                     control_scores: ArrayLike | None, control_reason: str = "no control scores",
                     resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """AUC of the attack, of its control (same records, untrained model) and their difference.

    The three come from one *paired* stratified bootstrap: each resample draws the same records
    for the attack and the control, so the CI of ``auc - control_auc`` is the uncertainty of the
    leakage attributable to training, not of two independent AUCs.

    Returns:
        ``{"auc", "control_auc", "auc_minus_control"}``, each ``{"value", "ci", "se", "reason"}``
        (95 % percentile CI, bootstrap standard error); the control's two are null with
        ``control_reason`` when ``control_scores`` is None.
    """
    arrays = [scores] if control_scores is None else [scores, control_scores]
    values = bootstrap_values(scores=arrays, labels=labels, metric=auc, resamples=resamples,
                              seed=seed)
    out = {"auc": _estimate(auc(scores=scores, labels=labels), values[0])}
    if control_scores is None:
        return out | {"control_auc": null_metric(control_reason),
                      "auc_minus_control": null_metric(control_reason)}
    control = auc(scores=control_scores, labels=labels)
    return out | {"control_auc": _estimate(control, values[1]),
                  "auc_minus_control": _estimate(out["auc"]["value"] - control,
                                                 values[0] - values[1])}

