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


class RunningMean:
    """A weighted mean of tensor dicts built one update at a time.

    The server adds each accepted update as it arrives and drops it, so a round with many
    clients holds one accumulator, not every update.
    """

    def __init__(self) -> None:
        self.sum: dict[str, torch.Tensor] | None = None
        self.weight = 0.0
        self.count = 0

    def add(self, tensors: Tensors, *, weight: float) -> None:
        """Add ``weight * tensors`` (``weight`` > 0, e.g. the client's example count)."""
        if weight <= 0:
            raise ValueError(f"update weight must be > 0, got {weight}")
        if self.sum is None:
            self.sum = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in tensors.items()}
        for name, acc in self.sum.items():
            acc.add_(tensors[name].float(), alpha=float(weight))
        self.weight += float(weight)
        self.count += 1

    def mean(self) -> dict[str, torch.Tensor]:
        """The weighted mean of everything added."""
        if self.sum is None:
            raise ValueError("the mean of no updates is undefined")
        return {n: acc / self.weight for n, acc in self.sum.items()}


def weighted_mean(updates: Sequence[Tensors], *, weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Per-tensor mean of ``updates`` weighted by ``weights`` (e.g. example counts)."""
    if len(weights) != len(updates):
        raise ValueError(f"{len(weights)} weights for {len(updates)} updates")
    running = RunningMean()
    for upd, w in zip(updates, weights, strict=True):
        running.add(upd, weight=w)
    return running.mean()


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
