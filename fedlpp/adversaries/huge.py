"""``huge``: finite but enormous values (default 3e38, near float32's maximum), which overflow a
weighted sum although each value passes a finiteness check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check, overwrite_values
from fedlpp.federation.records import LocalUpdate


@dataclass
class HugeConfig(Targeting):
    """``value`` (finite) written with random signs over ``fraction`` of each tensor."""

    value: float = 3e38
    fraction: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.value) and self.value != 0, behaviour="huge", option="value",
              value=self.value, allowed="a finite non-zero number")
        check(0 < self.fraction <= 1, behaviour="huge", option="fraction", value=self.fraction,
              allowed="0 < fraction <= 1")


@ADVERSARIES.register("huge")
class Huge(Adversary):
    """Sends an update of huge finite values."""

    Config = HugeConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        return overwrite_values(update, fraction=self.config.fraction, rng=rng,
                                value=self.config.value, random_sign=True)
