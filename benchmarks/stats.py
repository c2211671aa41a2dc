"""Means and intervals over seeds, shared by the report and the claims.

Two kinds of number are aggregated over a row's seeds:

* utility and cost (one number per seed): mean and Student-t CI half-width (:func:`mean_ci`);
* leakage estimates (``{"value", "ci", "se", "reason"}`` per seed, from a bootstrap over the
  cell's records): :func:`combine` gives the mean over the seeds that have a value and a 95 % CI
  from their bootstrap standard errors (records resampled, seeds held fixed), or the seed's own
  interval when one seed has a value; gain ratios are a ratio of means (:func:`ratio_of_means`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


MIN_SEEDS_FOR_T = 3  # a Student-t interval over two seeds says almost nothing: none is given


def mean_ci(values: list[float | None]) -> tuple[float, float | None]:
    """Mean and 95 % CI half-width, Student t over the values (seeds); the half-width is None
    for fewer than ``MIN_SEEDS_FOR_T`` finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), None
    if len(vals) < MIN_SEEDS_FOR_T:
        return float(np.mean(vals)), None
    from scipy import stats

    sem = float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
    return float(np.mean(vals)), float(stats.t.ppf(0.975, len(vals) - 1) * sem)


def estimate(metric: Any) -> dict[str, Any]:
    """A per-seed metric as ``{"value", "ci", "se", "reason"}``, whatever shape a cell stored:
    a dict of that form, a bare number (NaN = no value) or nothing."""
    if isinstance(metric, dict):
        return {"value": metric.get("value"), "ci": metric.get("ci"), "se": metric.get("se"),
                "reason": metric.get("reason")}
    if isinstance(metric, int | float) and math.isfinite(metric):
        return {"value": float(metric), "ci": None, "se": None, "reason": None}
    return {"value": None, "ci": None, "se": None, "reason": "not measured"}


def combine(per_seed: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Mean over the seeds with a value; CI (list or None), ``k`` of ``n`` seeds, reasons."""
    seeds = [estimate(m) for m in per_seed]
    have = [s for s in seeds if s["value"] is not None]
    reasons = sorted({s["reason"] for s in seeds if s["value"] is None and s["reason"]})
    out: dict[str, Any] = {"value": None, "ci": None, "k": len(have), "n": len(seeds),
                           "reasons": reasons}
    if len(have) == 1:
        out.update(value=have[0]["value"], ci=have[0]["ci"])
    elif have:
        mean = float(np.mean([s["value"] for s in have]))
        out["value"] = mean
        if all(s["se"] is not None for s in have):
            half = Z95 * math.sqrt(sum(s["se"] ** 2 for s in have)) / len(have)
            out["ci"] = [mean - half, mean + half]
    return out


def ratio_of_means(gains: list[dict[str, Any] | None],
                   denominators: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A gain ratio over seeds: ``sum(ratio_s * den_s) / sum(den_s)`` over the seeds whose ratio
    is defined, i.e. the mean numerator over the mean denominator; a single seed keeps its CI."""
    pairs = [(estimate(g), estimate(d)) for g, d in zip(gains, denominators, strict=True)]
    have = [(g, d) for g, d in pairs if g["value"] is not None and d["value"] is not None]
    reasons = sorted({g["reason"] for g, _ in pairs if g["value"] is None and g["reason"]})
    out: dict[str, Any] = {"value": None, "ci": None, "k": len(have), "n": len(pairs),
                           "reasons": reasons}
    if len(have) == 1:
        out.update(value=have[0][0]["value"], ci=have[0][0]["ci"])
    elif have:
        top = sum(g["value"] * d["value"] for g, d in have)
        out["value"] = top / sum(d["value"] for _, d in have)
    return out


def fmt(mean: float | None, ci: float | None, digits: int = 3) -> str:
    """``mean ± ci`` with ``digits`` decimals (significant digits from 1000 up); "–" for none."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}g}" if abs(mean) >= 1000 else f"{mean:.{digits}f}"
    return text if ci is None else f"{text} ± {ci:.{digits}f}"


def fmt_combined(c: dict[str, Any] | None, digits: int = 2, *, sign: bool = False,
                 seeds: bool = False, ci: bool = True) -> str:
    """A :func:`combine` / :func:`ratio_of_means` result: ``value [lo, hi]`` (without the interval
    when not ``ci``), with ``(k/n)`` when some seeds have no value (always with ``seeds``); "–"
    when none has (an open interval end is "…")."""
    if c is None or c["value"] is None:
        return "–"
    spec = f"{'+' if sign else ''}.{digits}f"
    text = f"{c['value']:{spec}}"
    if ci and c["ci"] is not None:
        ends = ["…" if e is None else f"{e:{spec}}" for e in c["ci"]]
        text += f" [{ends[0]}, {ends[1]}]"
    if seeds or c["k"] < c["n"]:
        text += f" ({c['k']}/{c['n']})"
    return text
