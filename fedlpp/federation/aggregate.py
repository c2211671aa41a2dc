"""Server-side maths on plain tensor dicts: validation, weighted mean, the master update.

Pure functions: no model, no I/O. The simulator and a Flower strategy call the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

Tensors = Mapping[str, torch.Tensor]


@dataclass
class ClientUpdate:
    """What one client sends back: its trained private tensors and how many examples it used."""

    client: int
    tensors: dict[str, torch.Tensor]
    num_examples: int
    train_loss: float
    bytes_up: int = 0


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


def weighted_mean(updates: Sequence[Tensors], *, weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Per-tensor mean of ``updates`` weighted by ``weights`` (e.g. example counts)."""
    if not updates:
        raise ValueError("weighted_mean needs at least one update")
    if len(weights) != len(updates):
        raise ValueError(f"{len(weights)} weights for {len(updates)} updates")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must sum to > 0, got {total}")
    out: dict[str, torch.Tensor] = {}
    for name in updates[0]:
        acc = torch.zeros_like(updates[0][name], dtype=torch.float32)
        for upd, w in zip(updates, weights, strict=True):
            acc.add_(upd[name].float(), alpha=float(w) / total)
        out[name] = acc
    return out


def apply_update(master: Tensors, *, mean: Tensors, broadcast: Tensors, server_lr: float,
                 rule: str) -> dict[str, torch.Tensor]:
    """The new master for the tensors in ``mean``; tensors not in ``mean`` are kept as they are.

    ``straight_through``: ``master + server_lr * (mean - broadcast)``. Clients started from the
    quantized ``broadcast``, so ``mean - broadcast`` is their aggregate progress; adding it to the
    full-precision master keeps the quantization error out of the master.
    ``replace``: the master becomes ``mean`` (what a naive server would do; the error accumulates).
    """
    if rule not in ("straight_through", "replace"):
        raise ValueError(f"Unknown aggregation rule {rule!r} (allowed: straight_through, replace)")
    new = dict(master)
    for name, m in mean.items():
        if rule == "straight_through":
            new[name] = master[name] + server_lr * (m - broadcast[name])
        else:
            new[name] = m.clone()
    return new
