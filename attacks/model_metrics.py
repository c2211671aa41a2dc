"""Model-leakage metrics as pure functions: how much of the central model's gain a recovered model
holds (with a paired bootstrap over test records), and parameter errors on what the model computes.

Per-record utilities (``records``) are what :meth:`attacks.context.AttackContext.record_utility`
gives: ``{"loss": summed loss per record, "count": tokens per record}`` plus, for classification,
``"correct"`` (1.0 where the prediction is right). Gains are oriented so that > 0 is better.
"""

import math
from collections.abc import Mapping

import numpy as np
import torch

from attacks.metrics import LEVEL, interval, null_metric

Records = Mapping[str, np.ndarray]


def _se(values: np.ndarray) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def utility_of(records: Records, *, key: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Utility ``key`` (``loss``: token-weighted mean loss; ``accuracy``) of each row of record
    positions ``rows`` (shape ``(resamples, n)``; None = every record once, one row)."""
    n = len(records["count"])
    rows = np.arange(n)[None, :] if rows is None else rows
    if key == "loss":
        return records["loss"][rows].sum(1) / np.maximum(records["count"][rows].sum(1), 1)
    if key == "accuracy":
        return records["correct"][rows].mean(1)
    raise ValueError(f"Unknown gain metric {key!r} (allowed: loss, accuracy)")


def _ratio(top: np.ndarray, bottom: np.ndarray, values_top: np.ndarray,
           values_bottom: np.ndarray) -> dict:
    """A gain ratio and the percentile interval of its resampled values.

    A resample whose denominator is not > 0 (at most 2.5 % of them once the central gain is
    significant) has an unbounded ratio: it counts as +-inf (the sign of its numerator), and an
    interval end that lands on one is null (unbounded). No standard error: a ratio has none.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(values_bottom > 0, values_top / values_bottom,
                          np.where(values_top >= 0, np.inf, -np.inf))
    ends = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")
    return {"value": float(top[0] / bottom[0]),
            "ci": [float(e) if np.isfinite(e) else None for e in ends], "se": None,
            "reason": None}


def gain_metrics(*, base: Records, central: Records, recovered: Records,
                 control: Records | None = None, key: str, higher_is_better: bool,
                 resamples: int = 1000, seed: int = 0,
                 control_reason: str = "no no-payload control") -> dict[str, dict]:
    """How much of the central model's improvement over base a recovered model R achieves.

    ``recovered_gain = (U(R) - U(base)) / (U(central) - U(base))`` (1.0 = the whole gain, 0 =
    none, < 0 = worse than base), ``control_gain`` the same for the no-payload control C, and
    ``gain_over_control = recovered_gain - control_gain = (U(R) - U(C)) / (U(central) -
    U(base))``, what the payload itself gave the attacker. All four models are measured on the
    same test records, so one *paired* bootstrap (resampling records, the same rows for every
    model) gives every interval. The ratios are null, with the reason, when the central gain's
    interval contains 0 or lies below it: there is then no gain to take a share of, and a ratio
    over a denominator near 0 would print numbers like -8280.

    Args:
        base, central, recovered, control: per-record utilities of each model (see the module).
        key: ``"loss"`` or ``"accuracy"``; higher_is_better: False for loss.
        resamples, seed: the bootstrap.

    Returns:
        ``{"central_gain", "recovered_gain", "control_gain", "gain_over_control"}``, each
        ``{"value", "ci", "se", "reason"}``; ``central_gain`` is ``sign * (U(central) - U(base))``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    models = {"base": base, "central": central, "recovered": recovered, "control": control}
    sizes = {name: len(r["count"]) for name, r in models.items() if r is not None}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"models were measured on different numbers of records: {sizes}")
    n, sign = sizes["base"], 1.0 if higher_is_better else -1.0
    rows = np.random.default_rng(seed).integers(0, n, (resamples, n))
    point = {m: utility_of(r, key=key) for m, r in models.items() if r is not None}
    boot = {m: utility_of(r, key=key, rows=rows) for m, r in models.items() if r is not None}
    if not all(np.isfinite(v).all() for v in (*point.values(), *boot.values())):
        bad = sorted(m for m, v in point.items() if not np.isfinite(v).all())
        return {name: null_metric(f"utility of {', '.join(bad) or 'a resample'} is not finite")
                for name in ("central_gain", "recovered_gain", "control_gain", "gain_over_control")}
    gain = {m: sign * (point[m] - point["base"]) for m in point}
    gain_boot = {m: sign * (boot[m] - boot["base"]) for m in boot}
    lo, hi = interval(gain_boot["central"])
    out = {"central_gain": {"value": float(gain["central"][0]), "ci": [lo, hi],
                            "se": _se(gain_boot["central"]), "reason": None}}
    if not lo > 0:
        why = (f"no significant central gain over base ({key} gain {gain['central'][0]:.4g}, "
               f"95% CI [{lo:.4g}, {hi:.4g}])")
        return out | {name: null_metric(why)
                      for name in ("recovered_gain", "control_gain", "gain_over_control")}
    out["recovered_gain"] = _ratio(gain["recovered"], gain["central"], gain_boot["recovered"],
                                   gain_boot["central"])
    if control is None:
        return out | {"control_gain": null_metric(control_reason),
                      "gain_over_control": null_metric(control_reason)}
    out["control_gain"] = _ratio(gain["control"], gain["central"], gain_boot["control"],
                                 gain_boot["central"])
    out["gain_over_control"] = _ratio(gain["recovered"] - gain["control"], gain["central"],
                                      gain_boot["recovered"] - gain_boot["control"],
                                      gain_boot["central"])
    return out


def _lora_pairs(names: set[str]) -> dict[str, str]:
    """``lora_A`` tensor name -> its ``lora_B`` twin (peft names them alike)."""
    pairs = {}
    for name in sorted(n for n in names if ".lora_A." in n):
        twin = name.replace(".lora_A.", ".lora_B.")
        if twin not in names:
            raise ValueError(f"LoRA tensor '{name}' has no '{twin}' to pair with")
        pairs[name] = twin
    unpaired = sorted(n for n in names if ".lora_B." in n and
                      n.replace(".lora_B.", ".lora_A.") not in pairs)
    if unpaired:
        raise ValueError(f"LoRA tensor '{unpaired[0]}' has no lora_A to pair with")
    return pairs


def param_rel_error(*, recovered: Mapping[str, torch.Tensor], master: Mapping[str, torch.Tensor],
                    lora_scale: float) -> float | None:
    """Relative error of what the model computes: ``sqrt(sum ||D_R - D_M||^2 / sum ||D_M||^2)``.

    For each LoRA layer, ``D = lora_scale * B @ A`` (``lora_scale = alpha / r``; a tensor named
    ``...lora_A...`` is paired with the one named ``...lora_B...``): the change the adapter
    makes to the layer's weight, so the seeded, barely moving A does not dominate the norm.
    Any other tensor (a classifier head in ``modules_to_save``, base linear weights) counts
    directly as ``D = W``. The squared Frobenius norms are summed over every layer and tensor
    before the ratio (one relative error, float64). None when the master's D are all zero.
    """
    if set(recovered) != set(master):
        missing, extra = sorted(set(master) - set(recovered)), sorted(set(recovered) - set(master))
        raise ValueError(f"tensor names differ: missing from recovered {missing}, extra {extra}")
    if not master:
        raise ValueError("no tensors to compare")
    for name, m in master.items():
        if recovered[name].shape != m.shape:
            raise ValueError(f"shape of '{name}' differs: {tuple(recovered[name].shape)} vs "
                             f"{tuple(m.shape)}")

    def as64(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device="cpu", dtype=torch.float64)

    pairs = _lora_pairs(set(master))
    direct = [n for n in master if n not in pairs and n not in pairs.values()]
    diff_sq = master_sq = 0.0
    for a, b in [*pairs.items(), *((n, None) for n in direct)]:
        if b is None:
            d_r, d_m = as64(recovered[a]), as64(master[a])
        else:
            d_r = lora_scale * as64(recovered[b]) @ as64(recovered[a])
            d_m = lora_scale * as64(master[b]) @ as64(master[a])
        diff_sq += float(((d_r - d_m) ** 2).sum())
        master_sq += float((d_m**2).sum())
    return math.sqrt(diff_sq / master_sq) if master_sq > 0 else None

