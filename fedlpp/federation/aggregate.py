"""Server-side maths on plain tensor dicts: validation, weighted mean, the master update, and the
bounds that keep the master finite.

Pure functions: no model, no I/O. The server object and a Flower strategy call the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedlpp.aggregators.mean import WeightedMean

Tensors = Mapping[str, torch.Tensor]
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def validate_update(tensors: Tensors, *, reference: Tensors) -> str | None:
    """Check an update against the expected names, shapes and dtypes, and for finite values.

    Returns:
        ``None`` when the update is acceptable, else a one-line reason for rejecting it.
    """
    missing = sorted(set(reference) - set(tensors))
    extra = sorted(set(tensors) - set(reference))
    if missing or extra:
        return f"wrong tensor names (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, ref in reference.items():
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            return f"{name}: not a tensor ({type(t).__name__})"
        if tuple(t.shape) != tuple(ref.shape):
            return f"{name}: shape {tuple(t.shape)} != expected {tuple(ref.shape)}"
        if t.dtype != ref.dtype:
            return f"{name}: dtype {t.dtype} != expected {ref.dtype}"
        if not torch.isfinite(t).all():
            return f"{name}: non-finite values"
    return None


def max_abs(tensors: Tensors) -> float:
    """Largest absolute value over every tensor (float64; 0 for no values)."""
    return max((float(t.detach().abs().max()) for t in tensors.values() if t.numel()), default=0.0)


def delta_norm(tensors: Tensors, *, broadcast: Tensors) -> float:
    """L2 norm of ``tensors - broadcast`` over every tensor, in float64 (never overflows for
    float32 inputs)."""
    total = 0.0
    for name, t in tensors.items():
        total += float((t.double() - broadcast[name].double()).pow(2).sum())
    return total**0.5


def contribution_limit(*, total_weight: float) -> float:
    """The largest absolute value an update may hold so that any weighted sum of updates whose
    weights add up to at most ``total_weight`` stays within float32 (the accumulator's type)."""
    return FLOAT32_MAX / max(total_weight, 1.0) / 2  # half: room for rounding and the master


def weighted_mean(updates: Sequence[Tensors], *, weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Per-tensor mean of ``updates`` weighted by ``weights`` (e.g. example counts)."""
    if len(weights) != len(updates):
        raise ValueError(f"{len(weights)} weights for {len(updates)} updates")
    running = WeightedMean()
    for upd, w in zip(updates, weights, strict=True):
        running.add(upd, weight=w)
    return running.result()


def _straight_through(master: torch.Tensor, mean: torch.Tensor, broadcast: torch.Tensor,
                      server_lr: float) -> torch.Tensor:
    return master + server_lr * (mean - broadcast)


def _replace(master: torch.Tensor, mean: torch.Tensor, broadcast: torch.Tensor,
             server_lr: float) -> torch.Tensor:
    return mean.clone()


APPLY_RULES = {"straight_through": _straight_through, "replace": _replace}


def apply_update(master: Tensors, *, mean: Tensors, broadcast: Tensors, server_lr: float,
                 rule: str) -> dict[str, torch.Tensor]:
    """The new master for the tensors in ``mean``; tensors not in ``mean`` are kept as they are.

    ``straight_through``: ``master + server_lr * (mean - broadcast)``. Clients started from the
    quantized ``broadcast``, so ``mean - broadcast`` is their aggregate progress; adding it to the
    full-precision master keeps the quantization error out of the master.
    ``replace``: the master becomes ``mean`` (what a naive server would do; the error accumulates).
    """
    if rule not in APPLY_RULES:
        raise ValueError(f"Unknown aggregation rule {rule!r} (allowed: {', '.join(APPLY_RULES)})")
    step = APPLY_RULES[rule]
    new = dict(master)
    for name, m in mean.items():
        new[name] = step(master[name], m, broadcast[name], server_lr)
    return new


def non_finite(tensors: Tensors) -> list[str]:
    """Names of the tensors holding a NaN or an infinity."""
    return [n for n, t in tensors.items() if not bool(torch.isfinite(t).all())]


def overflow_culprits(reach: Mapping[int, float], *, weights: Mapping[int, float],
                      master_abs: float, server_lr: float) -> list[int]:
    """The clients to blame when an aggregate would make the master non-finite.

    ``reach[c]`` is ``weight_c * max|update_c - broadcast|``. Clients are blamed in decreasing
    order of reach until the rest provably cannot overflow: ``master_abs + server_lr *
    sum(reach) / sum(weight) < float32 max`` over the clients left. If even one client alone
    fits the bound, the overflow comes from their combination, and every client is named.
    """
    order = sorted(reach, key=lambda c: reach[c], reverse=True)
    for cut in range(len(order)):
        rest = order[cut:]
        spread = sum(reach[c] for c in rest) / sum(weights[c] for c in rest)
        if master_abs + server_lr * spread < FLOAT32_MAX / 2:
            return sorted(order[:cut]) or sorted(order)
    return sorted(order)
