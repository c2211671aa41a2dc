"""The maths shared by the robust aggregation rules, as pure functions on tensors.

Coordinate-wise statistics work on one tensor name at a time, stacked along a new first
dimension (one row per update); distance-based rules work on each update flattened to one
float64 vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

Tensors = Mapping[str, torch.Tensor]


def stack(updates: Sequence[Tensors], *, name: str) -> torch.Tensor:
    """Tensor ``name`` of every update, stacked along a new first dimension (float32)."""
    if not updates:
        raise ValueError(f"no updates to stack for tensor {name!r}")
    return torch.stack([u[name].float() for u in updates])


def trim_count(beta: float, *, n: int) -> int:
    """``floor(beta * n)``, the values dropped at each end; the product is rounded to 9 decimals
    first so that a representation error (0.29 * 100 = 28.999...) does not drop one value less."""
    return math.floor(round(beta * n, 9))


def trimmed_mean(stacked: torch.Tensor, *, trim: int) -> torch.Tensor:
    """Per coordinate (along the first dimension): drop the ``trim`` largest and the ``trim``
    smallest values and average the rest, in float64, returned in ``stacked``'s dtype.

    Args:
        stacked: one row per update.
        trim: values dropped at each end; ``0 <= 2 * trim < len(stacked)``.
    """
    n = stacked.shape[0]
    if not 0 <= 2 * trim < n:
        raise ValueError(f"cannot drop {trim} values at each end of {n} (need 0 <= 2*trim < n)")
    kept = stacked.sort(dim=0).values[trim:n - trim] if trim else stacked
    return kept.double().mean(dim=0).to(stacked.dtype)


def coordinate_median(stacked: torch.Tensor) -> torch.Tensor:
    """Per coordinate median along the first dimension; for an even count the mean of the two
    middle values (``torch.median`` would return the lower one)."""
    return trimmed_mean(stacked, trim=(stacked.shape[0] - 1) // 2)


def flatten(tensors: Tensors, *, names: Sequence[str]) -> torch.Tensor:
    """One float64 vector of the values of ``tensors[name]`` for each of ``names``, in order."""
    return torch.cat([tensors[n].detach().reshape(-1).double() for n in names])


def pairwise_sq_distances(vectors: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` squared L2 distances between the rows of ``vectors`` (float64).

    Computed from the differences rather than as ``|a|^2 + |b|^2 - 2ab``, which cancels
    catastrophically for nearby rows (the honest updates a robust rule must tell apart).
    """
    n = vectors.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n - 1):
        d = (vectors[i + 1:].double() - vectors[i].double()).pow(2).sum(dim=1)
        out[i, i + 1:] = d
        out[i + 1:, i] = d
    return out


def krum_scores(distances: torch.Tensor, *, byzantine: int) -> torch.Tensor:
    """Krum's score of each row: its sum of squared distances to its ``n - byzantine - 2``
    nearest other rows (Blanchard et al. 2017); lower is more central.

    Args:
        distances: ``[n, n]`` squared distances (:func:`pairwise_sq_distances`).
        byzantine: the number ``f`` of Byzantine updates tolerated; ``n > 2f + 2``.
    """
    n = distances.shape[0]
    if n <= 2 * byzantine + 2:
        raise ValueError(f"Krum with f={byzantine} needs n > 2f+2 = {2 * byzantine + 2} "
                         f"updates, got n={n}")
    others = distances.masked_fill(torch.eye(n, dtype=torch.bool), math.inf)
    return others.sort(dim=1).values[:, :n - byzantine - 2].sum(dim=1)


def clip_factor(norm: float, *, bound: float) -> float:
    """The factor that brings a vector of L2 norm ``norm`` within ``bound`` (1.0 if it is)."""
    return 1.0 if norm <= bound else bound / norm
