"""Means and confidence intervals over seeds, shared by the report and the claims."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values: list[float | None]) -> tuple[float, float | None]:
    """Mean and 95 % CI half-width, Student t (None for fewer than two finite values)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), None
    if len(vals) < 2:
        return vals[0], None
    from scipy import stats

    sem = float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
    return float(np.mean(vals)), float(stats.t.ppf(0.975, len(vals) - 1) * sem)


def fmt(mean: float, ci: float | None, digits: int = 3) -> str:
    """``mean ± ci`` with ``digits`` decimals (significant digits from 1000 up); "–" for none."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}g}" if abs(mean) >= 1000 else f"{mean:.{digits}f}"
    return text if ci is None else f"{text} ± {ci:.{digits}f}"
