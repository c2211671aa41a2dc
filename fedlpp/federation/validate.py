"""Checks on one received update, before it may enter an aggregate: the expected layout,
finite values, its distance from the broadcast, and the largest value any update may contribute
so that a sum of updates stays within float32.

Pure functions on plain tensor dicts: no model, no I/O. The master's update itself is in
:mod:`fedlpp.federation.master_update`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

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


def non_finite(tensors: Tensors) -> list[str]:
    """Names of the tensors holding a NaN or an infinity."""
    return [n for n, t in tensors.items() if not bool(torch.isfinite(t).all())]
