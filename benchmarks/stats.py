"""Means and intervals over seeds, shared by the report and the claims.

Three kinds of number are aggregated over a row's seeds:

* utility of the central / proxy / base models: mean over seeds with a percentile interval from
  the paired bootstrap over seeds and test records (:mod:`benchmarks.bootstrap`);
* other per-seed numbers without per-record results (a recovered model's utility, gradient
  fidelity; cost is deterministic): mean and the range over the seeds (:func:`seed_values`),
  never a Student-t interval over a handful of seeds;
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


def seed_values(values: list[float | None]) -> dict[str, Any]:
    """Mean and ``[min, max]`` over the seeds with a finite value (``range`` None below two),
    with ``k`` of ``n`` seeds."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return {"value": float(np.mean(vals)) if vals else None,
            "range": [float(min(vals)), float(max(vals))] if len(vals) > 1 else None,
            "k": len(vals), "n": len(values)}


def estimate(metric: Any) -> dict[str, Any]:
    """A per-seed metric as ``{"value", "ci", "se", "reason"}``, whatever shape a cell stored:
    a dict of that form, a bare number (NaN = no value) or nothing."""
    if isinstance(metric, dict):
        return {"value": metric.get("value"), "ci": metric.get("ci"), "se": metric.get("se"),
                "reason": metric.get("reason")}
    if isinstance(metric, int | float) and math.isfinite(metric):
        return {"value": float(metric), "ci": None, "se": None, "reason": None}
    return {"value": None, "ci": None, "se": None, "reason": "not measured"}


def combine(per_seed: list[dict[str, Any] | None],
            bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean over the seeds with a value; CI (list or None), ``k`` of ``n`` seeds, reasons.
    ``bounds``: the metric's range (an AUC's [0, 1]); a normal interval is clipped to it."""
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
            lo, hi = bounds or (-math.inf, math.inf)
            out["ci"] = [max(lo, mean - half), min(hi, mean + half)]
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


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def fmt(value: float | None, ci: list[float] | None = None, digits: int = 3) -> str:
    """``value [lo, hi]`` with ``digits`` decimals (significant digits from 1000 up); "–" for
    none."""
    if value is None or not math.isfinite(value):
        return "–"
    text = _num(value, digits)
    return text if ci is None else f"{text} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def fmt_seeds(c: dict[str, Any] | None, digits: int = 3) -> str:
    """A :func:`seed_values` result: ``mean (seeds lo–hi)``, ``(k/n)`` when some seeds have no
    value; "–" when none has."""
    if c is None or c["value"] is None:
        return "–"
    text = _num(c["value"], digits)
    if c["range"] is not None:
        text += f" (seeds {_num(c['range'][0], digits)}–{_num(c['range'][1], digits)})"
    return text + (f" ({c['k']}/{c['n']})" if c["k"] < c["n"] else "")


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
