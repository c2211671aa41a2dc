"""Hand-built cell JSONs with per-record test results, for the report's uncertainty tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.bootstrap import utility

BASE_PPL = 80.0
MISSING = object()  # a cell written before convergence was recorded


def lm_records(seed: int, *, level: float, factors: dict[str, float], n: int = 64,
               noise: float = 0.4, extra: dict[str, float] | None = None) -> dict[str, Any]:
    """LM ``final_records`` of one seed: every model shares the records' difficulty (paired).

    ``level``: the seed's central perplexity scale; ``factors``: model -> its perplexity as a
    multiple of ``level`` (base gets ``BASE_PPL``); ``extra``: model -> per-record noise added
    on top (its own draws, so the models differ record by record).
    """
    rng = np.random.default_rng(1000 + seed)
    count = rng.integers(8, 33, size=n).astype(float)
    hard = rng.normal(0.0, noise, size=n)  # per-token loss offset of each record
    out: dict[str, Any] = {"ids": [f"{seed}-{i}" for i in range(n)]}
    for model in ("central", "proxy", "base"):
        level_m = BASE_PPL if model == "base" else level * factors[model]
        own = rng.normal(0.0, (extra or {}).get(model, 0.0), size=n)
        loss = (math.log(level_m) + hard + own) * count
        out[model] = {"loss": loss.tolist(), "count": count.tolist()}
    return out


def cls_records(seed: int, *, p: dict[str, float], n: int = 120) -> dict[str, Any]:
    """Classification ``final_records``: model -> its accuracy (independent draws per model)."""
    rng = np.random.default_rng(2000 + seed)
    out: dict[str, Any] = {"ids": list(range(n))}
    for model, acc in p.items():
        correct = (rng.random(n) < acc).astype(float)
        out[model] = {"loss": (1.0 - correct + 0.5).tolist(), "count": [1.0] * n,
                      "correct": correct.tolist()}
    return out


def _final(records: dict[str, Any], metric: str) -> dict[str, dict[str, float]]:
    out = {}
    for model in ("central", "proxy", "base"):
        arrays = {k: np.asarray(v, dtype=float) for k, v in records[model].items()}
        out[model] = {metric: float(utility(arrays, metric)[0]),
                      "loss": float(utility(arrays, "loss")[0])}
    return out


def cell(seed: int, quant: str, records: dict[str, Any] | None, *, metric: str = "perplexity",
         convergence: Any = MISSING, selection: dict[str, Any] | None = None,
         bytes_down: float | None = None, resamples: int = 1000,
         final: dict[str, Any] | None = None) -> dict[str, Any]:
    """A finished cell of variant ``quant`` (``fp32`` or ``nf-<bits>``) and ``seed``."""
    bits = 32 if quant == "fp32" else int(quant.split("-")[1])
    train: dict[str, Any] = {
        "final": final or _final(records, metric),
        "comm": {"bytes_down_per_round": bytes_down or 1000.0 * bits, "bytes_up_per_round": 32000.0},
    }
    if records is not None:
        train["final_records"] = records
    if convergence is not MISSING:
        train["convergence"] = {"converged": convergence, "reason": "test curve"}
    if selection is not None:
        train["selection"] = selection
    return {"status": "ok", "labels": {"quant": quant, "seed": seed}, "attacks": [],
            "attack_plan": {"targets": ["central"], "resamples": resamples},
            "config": {"seed": seed, "model": {"name": "m"},
                       "data": {"name": "d", "partition": "iid", "max_records": 400},
                       "quant": {"scope": "adapter", "name": "none" if bits == 32 else "nf",
                                 "bits": bits},
                       "fed": {"num_clients": 2, "rounds": 3, "local_steps": 2,
                               "method": "fedlpp"}},
            "train": train, "fidelity": 0.9}


def rows_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows, one per variant, as the report builds them."""
    from benchmarks.report import group_cells, summarize

    suite = {"grid_keys": ["quant", "seed"]}
    return summarize(group_cells(suite, cells))
