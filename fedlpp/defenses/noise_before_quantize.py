"""``noise-before-quantize``: the server adds Gaussian noise to the master's trained tensors
before quantizing each broadcast (the master itself is not changed), so a payload's
quantization intervals no longer bound the master. Aimed at attacks that read those intervals
(``box-pgd``, ``trajectory``, ``final-box``).

The noise std of a tensor is ``scale`` times its root mean square, drawn afresh every round from
the run seed. Clients train from the noisy proxy and the straight-through update subtracts that
same proxy, so the noise does not accumulate in the master; its cost is in what clients start
from, and the suite reports it as central utility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.defenses import DEFENSES, Defense, Tensors
from fedlpp.errors import FedlppError
from fedlpp.seeding import derive_seed, torch_generator

NOISE_STREAM = 102  # seeds this defense's noise apart from every other draw of the run


@dataclass
class NoiseBeforeQuantizeConfig:
    scale: float = 0.5  # noise std as a share of each tensor's root mean square

    def __post_init__(self) -> None:
        if not 0 < self.scale < 1e6:  # its type is checked where the options are built
            raise FedlppError(f"Invalid scale: {self.scale!r} for defense 'noise-before-quantize' "
                              "(allowed: a number > 0, the noise std relative to a tensor's RMS)")


def dither(tensors: Tensors, *, scale: float, skip: frozenset[str],
           generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``tensors`` with N(0, (scale * rms)^2) noise on each one not in ``skip``."""
    out = {}
    for name, t in tensors.items():
        if name in skip:
            out[name] = t
            continue
        rms = float(t.float().pow(2).mean().sqrt())
        out[name] = t + scale * rms * torch.randn(t.shape, generator=generator, dtype=t.dtype)
    return out


@DEFENSES.register("noise-before-quantize")
class NoiseBeforeQuantize(Defense):
    """Dithers what is quantized for each broadcast."""

    Config = NoiseBeforeQuantizeConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.rounds: list[int] = []

    def before_broadcast(self, rnd: int, tensors: Tensors, *, static: frozenset[str]) -> Tensors:
        self.rounds.append(rnd)
        return dither(tensors, scale=self.config.scale, skip=static,
                      generator=torch_generator(derive_seed(self.seed, rnd, NOISE_STREAM)))

    def report(self) -> dict[str, Any]:
        return {"scale": self.config.scale, "noise": "gaussian, std = scale x tensor RMS",
                "dithered_broadcasts": len(self.rounds)}
