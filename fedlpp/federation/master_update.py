"""The master's update from a round's accepted updates: their weighted mean, the
straight-through step (``master += server_lr * (mean - broadcast)``) or a plain replace, and
which clients to blame when an aggregate would make the master non-finite.

Pure functions on plain tensor dicts: no model, no I/O. The server object and a Flower strategy
call the same ones; the checks on each update before it is aggregated are in
:mod:`fedlpp.federation.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedlpp.aggregators.mean import WeightedMean
from fedlpp.federation.validate import FLOAT32_MAX

Tensors = Mapping[str, torch.Tensor]


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
