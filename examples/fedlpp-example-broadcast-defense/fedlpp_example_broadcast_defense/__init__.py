"""Example plugin: a defense at the broadcast hook, added without touching fedlpp-bench.

Before each broadcast is quantized, the server adds a secret low-rank perturbation U V^T to each
trainable 2-D tensor (U, V Gaussian, ``rank`` columns, rescaled so its RMS is ``scale`` times the
tensor's), drawn afresh every round from the run seed; the master itself is not changed. A client
that reads the payload as the master (``as-is``) or averages payloads (``mean-of-last``) gets the
mask with it; the straight-through update subtracts the same proxy it trained from, so the mask
does not accumulate in the master. Tensors that are all zeros (a LoRA B at init) get no mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.defenses import DEFENSES, Defense, Tensors
from fedlpp.errors import FedlppError
from fedlpp.seeding import derive_seed, torch_generator

MASK_STREAM = 9021  # seeds this defense's masks apart from every other draw of the run


@dataclass
class SecretMaskConfig:
    """Options of ``secret-mask``: the mask's rank and size."""

    rank: int = 1  # columns of the mask's factors U and V (>= 1)
    scale: float = 0.1  # the mask's RMS relative to each tensor's RMS (> 0)

    def __post_init__(self) -> None:  # their types are checked where the options are built
        if self.rank < 1:
            raise FedlppError(f"Invalid rank: {self.rank!r} for defense 'secret-mask' "
                              "(allowed: an integer >= 1)")
        if not 0 < self.scale < 1e6:  # NaN fails the comparison too
            raise FedlppError(f"Invalid scale: {self.scale!r} for defense 'secret-mask' "
                              "(allowed: a number > 0, the mask's RMS relative to a tensor's)")


def low_rank_mask(t: torch.Tensor, *, rank: int, scale: float,
                  generator: torch.Generator) -> torch.Tensor:
    """A rank-``rank`` matrix shaped like ``t`` whose RMS is ``scale`` times ``t``'s."""
    rows, cols = t.shape
    u = torch.randn(rows, rank, generator=generator, dtype=torch.float64)
    v = torch.randn(cols, rank, generator=generator, dtype=torch.float64)
    mask = u @ v.T
    mask_rms = mask.pow(2).mean().sqrt().clamp_min(1e-30)
    target = t.double().pow(2).mean().sqrt()
    return (mask * (scale * target / mask_rms)).to(device=t.device, dtype=t.dtype)


@DEFENSES.register("secret-mask")
class SecretMask(Defense):
    """Adds a seeded secret low-rank mask to each broadcast (example plugin)."""

    Config = SecretMaskConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.rounds: list[int] = []
        self.masked: set[str] = set()

    def before_broadcast(self, rnd: int, tensors: Tensors, *, static: frozenset[str]) -> Tensors:
        self.rounds.append(rnd)
        gen = torch_generator(derive_seed(self.seed, rnd, MASK_STREAM))
        out = {}
        for name, t in tensors.items():  # in the order given: the same draws for the same run
            if name in static or t.dim() != 2 or not t.is_floating_point():
                out[name] = t
                continue
            self.masked.add(name)
            out[name] = t + low_rank_mask(t, rank=self.config.rank, scale=self.config.scale,
                                          generator=gen)
        return out

    def report(self) -> dict[str, Any]:
        return {"rank": self.config.rank, "scale": self.config.scale,
                "masked_broadcasts": len(self.rounds), "masked_tensors": len(self.masked)}
