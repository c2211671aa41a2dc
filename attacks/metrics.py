"""Leakage metrics as pure functions: membership inference (ROC, AUC, TPR at low FPR, advantage,
bootstrap CIs, calibration) and model leakage (recovered gain, parameter relative error).

Convention: ``scores`` higher = more likely a member; ``labels`` 1 = member, 0 = non-member.
"""

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

ArrayLike = np.ndarray | Sequence[float]
Metric = Callable[..., float]  # called as metric(scores=..., labels=...)


def _check(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 scores, int labels) or raise a one-line ValueError naming the problem."""
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
    s, y = _check(scores, labels)
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
    s, y = _check(scores, labels)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(*, scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Highest TPR over thresholds whose FPR is at most ``fpr``.

    The ROC is read as a step function, with no interpolation between points: the conservative
    reading of Carlini et al., "Membership Inference Attacks From First Principles" (S&P 2022).
    Interpolating would credit the attacker with a randomised threshold it never reported. So
    with fewer than ``1/fpr`` non-members the only admissible threshold makes no false positive,
    and tied scores at the top count as one threshold (all-equal scores give 0.0 below FPR 1).

    Args:
        scores, labels: as everywhere in this module.
        fpr: the false-positive-rate budget, in [0, 1].
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s, y = _check(scores, labels)
    rates_fp, rates_tp, _ = _full_roc(s, y)
    num_nonmembers = int(len(y) - y.sum())
    allowed = np.rint(rates_fp * num_nonmembers) <= _max_false_positives(fpr, num_nonmembers)
    return float(rates_tp[allowed].max())  # the (0, 0) point is always allowed


def advantage(*, scores: ArrayLike, labels: ArrayLike) -> float:
    """Membership advantage: max over thresholds of TPR - FPR (0 for a useless attack)."""
    s, y = _check(scores, labels)
    fpr, tpr, _ = _full_roc(s, y)
    return float((tpr - fpr).max())


# --- bootstrap ------------------------------------------------------------------------------
# A resample is summarised by how many members / non-members it holds at each distinct score
# (sorted high to low), so every metric above is a few cumulative sums over a (resamples x
# distinct scores) matrix: 1000 resamples cost one bincount instead of 1000 sklearn calls.

def _batched(metric: Metric) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The vectorised twin of one of this module's metrics, or None for any other callable."""
    if metric is auc:
        def batch(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
            neg_below = neg.sum(1, keepdims=True) - np.cumsum(neg, 1)  # strictly lower scores
            return (pos * (neg_below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))
        return batch
    if metric is advantage:
        return lambda pos, neg: np.maximum(
            (np.cumsum(pos, 1) / pos.sum(1, keepdims=True)
             - np.cumsum(neg, 1) / neg.sum(1, keepdims=True)).max(1), 0.0)
    if (isinstance(metric, functools.partial) and metric.func is tpr_at_fpr and not metric.args
            and set(metric.keywords) == {"fpr"}):
        budget = float(metric.keywords["fpr"])

        def batch(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
            allowed = np.cumsum(neg, 1) <= _max_false_positives(budget, int(neg[0].sum()))
            return np.where(allowed, np.cumsum(pos, 1), 0).max(1) / pos.sum(1)
        return batch
    return None


def bootstrap_ci(*, scores: ArrayLike, labels: ArrayLike, metric: Metric, resamples: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric``.

    Members and non-members are resampled separately (stratified), so each resample keeps both
    classes and the class sizes. ``auc``, ``advantage`` and ``functools.partial(tpr_at_fpr,
    fpr=x)`` run vectorised; any other ``metric(scores=..., labels=...)`` is called per resample
    on the same resamples (same seed -> same resamples either way).

    Args:
        scores, labels: as everywhere in this module.
        metric: the statistic to bootstrap.
        resamples: number of bootstrap resamples (>= 1).
        level: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        (lo, hi), the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s, y = _check(scores, labels)
    pos_s, neg_s = s[y == 1], s[y == 0]
    rng, batch, values = np.random.default_rng(seed), _batched(metric), []
    _, codes = np.unique(-s, return_inverse=True)  # distinct-score index, highest score first
    width, pos_codes, neg_codes = codes.max() + 1, codes[y == 1], codes[y == 0]
    chunk = max(1, 4_000_000 // len(s))  # resamples per pass, bounding memory to ~100 MB
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        ip, ineg = rng.integers(0, len(pos_s), (rows, len(pos_s))), rng.integers(
            0, len(neg_s), (rows, len(neg_s)))
        if batch is None:
            values += [metric(scores=np.concatenate([pos_s[a], neg_s[b]]),
                              labels=np.r_[np.ones(len(a)), np.zeros(len(b))])
                       for a, b in zip(ip, ineg, strict=True)]
            continue
        offset = width * np.arange(rows)[:, None]  # each resample gets its own bincount range
        pos = np.bincount((pos_codes[ip] + offset).ravel(), minlength=rows * width)
        neg = np.bincount((neg_codes[ineg] + offset).ravel(), minlength=rows * width)
        values += batch(pos.reshape(-1, width), neg.reshape(-1, width)).tolist()
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def membership_metrics(*, scores: ArrayLike, labels: ArrayLike, resamples: int = 1000,
                       seed: int = 0) -> dict:
    """All data-leakage metrics of one attack, in the project's vocabulary, JSON-able.

    Returns:
        ``{"auc", "tpr@1%fpr", "tpr@0.1%fpr", "advantage"}`` each ``{"value", "ci": [lo, hi]}``
        (95% stratified bootstrap), plus ``num_members``, ``num_nonmembers`` and ``roc``.
    """
    s, y = _check(scores, labels)
    named: dict[str, Metric] = {
        "auc": auc, "tpr@1%fpr": functools.partial(tpr_at_fpr, fpr=0.01),
        "tpr@0.1%fpr": functools.partial(tpr_at_fpr, fpr=0.001), "advantage": advantage}
    out: dict = {name: {"value": metric(scores=s, labels=y),
                        "ci": list(bootstrap_ci(scores=s, labels=y, metric=metric,
                                                resamples=resamples, seed=seed))}
                 for name, metric in named.items()}
    out |= {"num_members": int(y.sum()), "num_nonmembers": int(len(y) - y.sum()),
            "roc": roc_curve_points(scores=s, labels=y)}
    return out


def calibration_check(*, nonmember_scores_a: ArrayLike, nonmember_scores_b: ArrayLike,
                      resamples: int = 1000, seed: int = 0) -> dict:
    """Sanity check of an attack: AUC of non-members (a, labelled 1) vs other non-members (b).

    Both sets are outside the training data, so a sound attack cannot tell them apart; a CI that
    excludes 0.5 means the score leaks something else (distribution shift, a bug).

    Returns:
        ``{"auc": {"value", "ci": [lo, hi]}, "passes": lo <= 0.5 <= hi}``.
    """
    a, b = np.asarray(nonmember_scores_a, float), np.asarray(nonmember_scores_b, float)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"both non-member sets must be non-empty, got {a.size} and {b.size}")
    s, y = np.concatenate([a, b]), np.r_[np.ones(len(a), int), np.zeros(len(b), int)]
    lo, hi = bootstrap_ci(scores=s, labels=y, metric=auc, resamples=resamples, seed=seed)
    return {"auc": {"value": auc(scores=s, labels=y), "ci": [lo, hi]}, "passes": lo <= 0.5 <= hi}


# --- model leakage --------------------------------------------------------------------------

def recovered_gain(*, recovered: float, base: float, central: float,
                   higher_is_better: bool) -> float:
    """Share of the central model's improvement over base that a recovered model R achieves.

    ``(U(R) - U(base)) / (U(central) - U(base))``: 1.0 = R got the whole gain, 0.0 = none,
    negative = R is worse than base. Improvements are oriented by ``higher_is_better`` (False
    for loss / perplexity). The ratio itself is the same either way; the direction decides when
    it is undefined: if central is not better than base (equal, or worse) there is no gain to
    share and the result is ``nan`` (a worse central would flip the sign of every reading).

    Args:
        recovered: utility of the recovered model.
        base: utility of the base (not fine-tuned) model.
        central: utility of the server's master model.
        higher_is_better: True for accuracy, False for loss and perplexity.
    """
    if not (math.isfinite(base) and math.isfinite(central)):
        raise ValueError(f"base and central utility must be finite, got {base} and {central}")
    sign = 1.0 if higher_is_better else -1.0
    total = sign * (central - base)
    return sign * (recovered - base) / total if total > 0 else math.nan


def param_rel_error(*, recovered: Mapping[str, torch.Tensor],
                    master: Mapping[str, torch.Tensor]) -> float:
    """``||W_R - W_master|| / ||W_master||``, Frobenius over all tensors jointly (float64).

    Returns ``nan`` when the master is all zeros (no scale to be relative to).
    """
    if set(recovered) != set(master):
        missing, extra = sorted(set(master) - set(recovered)), sorted(set(recovered) - set(master))
        raise ValueError(f"tensor names differ: missing from recovered {missing}, extra {extra}")
    if not master:
        raise ValueError("no tensors to compare")
    diff_sq = master_sq = 0.0
    for name, m in master.items():
        r = recovered[name]
        if r.shape != m.shape:
            raise ValueError(f"shape of '{name}' differs: {tuple(r.shape)} vs {tuple(m.shape)}")
        m64 = m.detach().to(torch.float64, copy=False).cpu()
        diff_sq += float(((r.detach().to(torch.float64).cpu() - m64) ** 2).sum())
        master_sq += float((m64**2).sum())
    return math.sqrt(diff_sq / master_sq) if master_sq > 0 else math.nan
