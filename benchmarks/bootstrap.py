"""Paired bootstrap of utility over seeds and test records.

Every cell stores its final models' per-record test results (``cell["train"]["final_records"]``:
record ``ids`` and, per model, summed ``loss``, token ``count`` and, for classification,
``correct``). From them a utility is recomputed on any resample of the records: perplexity =
exp(sum loss / sum count) (token-weighted), accuracy = mean correct, loss = sum loss / sum count.

One replicate of the two-stage bootstrap draws the seeds with replacement (S of S) and, for each
drawn seed, its test records with replacement (n of n). Arms (a model of a cell) measured on the
same records of one seed form a *block* and get the same record draw: their differences are
paired. Arms on different records (two cells whose ``ids`` differ) get independent draws. The
interval is the percentile interval of the replicates. With one seed only records are resampled,
so the interval covers test-record noise only; resampling both levels is conservative (the
record noise is counted within each drawn seed as well as between seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

BOOT_SEED = 20261125  # fixed: the same cells give the same report, whatever the order they ran
LEVEL = 0.95

Records = dict[str, np.ndarray]  # "loss", "count" and (classification) "correct", one per record
Block = dict[str, Records]  # arm name -> its records; the arms of a block share their records
Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # arm -> (R, S) utility -> (R,)


def model_records(final_records: Mapping[str, Any] | None, model: str) -> Records | None:
    """One model's per-record arrays from a cell's ``final_records``; None when absent."""
    found = (final_records or {}).get(model)
    if not found:
        return None
    out = {"loss": np.asarray(found["loss"], dtype=float),
           "count": np.asarray(found["count"], dtype=float)}
    if found.get("correct") is not None:
        out["correct"] = np.asarray(found["correct"], dtype=float)
    return out


def utility(records: Records, metric: str, idx: np.ndarray | None = None) -> np.ndarray:
    """``metric`` of the records at each row of ``idx`` (all records once when None)."""
    idx = np.arange(len(records["loss"]))[None, :] if idx is None else idx
    if metric == "accuracy":
        return records["correct"][idx].mean(axis=1)
    loss = records["loss"][idx].sum(axis=1) / np.maximum(records["count"][idx].sum(axis=1), 1)
    return np.exp(np.minimum(loss, 700.0)) if metric == "perplexity" else loss


def replicates(seeds: Sequence[Sequence[Block]], *, metric: str, resamples: int,
               rng_seed: int = BOOT_SEED) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Observed and bootstrap per-seed utilities of every arm.

    Args:
        seeds: per seed, its blocks; every seed has the same arm names.
        metric: ``perplexity``, ``accuracy`` or ``loss``.
        resamples: bootstrap replicates R.
        rng_seed: seeds the draws.

    Returns:
        (arm -> (1, S) observed utilities, arm -> (R, S) utilities of the resampled seeds and
        records; column j of a replicate is its j-th drawn seed).
    """
    rng = np.random.default_rng(rng_seed)
    count = len(seeds)
    arms = [a for block in seeds[0] for a in block]
    drawn = rng.integers(count, size=(resamples, count))
    observed = {a: np.empty((1, count)) for a in arms}
    boot = {a: np.empty((resamples, count)) for a in arms}
    for s, blocks in enumerate(seeds):
        rows, cols = np.nonzero(drawn == s)
        for block in blocks:
            n = len(next(iter(block.values()))["loss"])
            idx = rng.integers(n, size=(len(rows), n))
            for arm, records in block.items():
                observed[arm][0, s] = utility(records, metric)[0]
                boot[arm][rows, cols] = utility(records, metric, idx)
    return observed, boot


def percentile(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of bootstrap replicates; None when some are NaN (an infinite
    replicate, e.g. a ratio over a zero gain, is kept as an order statistic: no interpolation)."""
    if np.any(np.isnan(samples)):
        return None
    tail = (1.0 - level) / 2
    method = "linear" if np.all(np.isfinite(samples)) else "inverted_cdf"
    lo, hi = np.quantile(samples, [tail, 1.0 - tail], method=method)
    return [float(lo), float(hi)]


def estimate(seeds: Sequence[Sequence[Block]], statistic: Statistic, *, metric: str,
             resamples: int) -> tuple[float, list[float] | None, np.ndarray]:
    """(point estimate, percentile CI, replicates) of ``statistic`` over seeds and records."""
    observed, boot = replicates(seeds, metric=metric, resamples=resamples)
    samples = statistic(boot)
    return float(statistic(observed)[0]), percentile(samples), samples


def missing_records(per_seed: Sequence[Mapping[str, Any] | None], models: Sequence[str]) -> str | None:
    """Why the cells of ``per_seed`` (``final_records`` or None each) cannot be bootstrapped."""
    lacking = sum(1 for fr in per_seed if any(model_records(fr, m) is None for m in models))
    if lacking:
        return f"no interval: {lacking} of {len(per_seed)} cells lack per-record test results"
    return None


def utility_intervals(per_seed: Sequence[Mapping[str, Any] | None], *, metric: str,
                      resamples: int) -> dict[str, dict[str, Any]]:
    """Per model (central, proxy, base): mean over seeds of its utility and its percentile CI
    (``{"value", "ci", "seeds", "why"}``); ``ci`` None with ``why`` when cells lack records."""
    models = ("central", "proxy", "base")
    why = missing_records(per_seed, models) if per_seed else "no cells"
    if why:
        return {m: {"value": None, "ci": None, "seeds": len(per_seed), "why": why} for m in models}
    seeds = [[{m: model_records(fr, m) for m in models}] for fr in per_seed]
    observed, boot = replicates(seeds, metric=metric, resamples=resamples)
    return {m: {"value": float(observed[m].mean()), "ci": percentile(boot[m].mean(axis=1)),
                "seeds": len(seeds), "why": None} for m in models}


def seed_note(seeds: int) -> str:
    """How far an interval reaches, said beside it."""
    if seeds == 1:
        return "1 seed: the interval covers test-record noise only"
    return f"{seeds} seeds and their test records resampled"


def log_if(metric: str) -> Callable[[np.ndarray], np.ndarray]:
    """Perplexity is compared on the log scale (the loss); other metrics as they are."""
    return np.log if metric == "perplexity" else (lambda x: x)


def comparison_seeds(parts: Mapping[str, tuple[Mapping[Any, Any], Sequence[str]]]
                     ) -> tuple[list[list[Block]] | None, list[Any], str]:
    """The blocks of a comparison between cells, per seed that every part ran.

    Args:
        parts: part name -> (seed -> that cell's ``final_records`` or None, models used); arms
            are named ``"<part>:<model>"``.

    Returns:
        (per seed its blocks, or None when some cell lacks records; the seeds; a note saying
        whether the records are paired, or why there is no interval). Parts whose cells of one
        seed have the same record ids share a block (paired); others are drawn independently.
    """
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed, _ in parts.values())))
    why = missing_records([by_seed[s] for by_seed, _ in parts.values() for s in seeds],
                          [m for _, models in parts.values() for m in models])
    if not seeds or why:
        return None, seeds, why or "no interval: no seed in common"
    out, unpaired = [], []
    for seed in seeds:
        by_ids: dict[tuple, Block] = {}
        for name, (by_seed, models) in parts.items():
            block = by_ids.setdefault(tuple(by_seed[seed]["ids"]), {})
            block.update({f"{name}:{m}": model_records(by_seed[seed], m) for m in models})
        if len(by_ids) > 1:
            unpaired.append(seed)
        out.append(list(by_ids.values()))
    note = seed_note(len(seeds)) + ("; paired over test records" if not unpaired else
                                    "; NOT paired over records for seed "
                                    f"{', '.join(map(str, unpaired))} (the cells' test records "
                                    "differ): independent draws")
    return out, seeds, note
