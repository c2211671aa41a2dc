"""``inf``: +-infinity in place of some of the trained values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check, overwrite_values
from fedlpp.federation.records import LocalUpdate


@dataclass
class InfConfig(Targeting):
    """``fraction`` of each tensor's values set to +inf or -inf (at least one)."""

    fraction: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.fraction <= 1, behaviour="inf", option="fraction", value=self.fraction,
              allowed="0 < fraction <= 1")


@ADVERSARIES.register("inf")
class Inf(Adversary):
    """Sends an update with infinite values."""

    Config = InfConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        return overwrite_values(update, fraction=self.config.fraction, rng=rng,
                                value=float("inf"), random_sign=True)
