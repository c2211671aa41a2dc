"""``inflated-count``: claims more training examples than it has, to weigh more in the mean."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check
from fedlpp.protocol.records import LocalUpdate


@dataclass
class InflatedCountConfig(Targeting):
    """``factor``: the claimed example count is the real one times this (> 0, != 1)."""

    factor: float = 1000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.factor > 0 and self.factor != 1, behaviour="inflated-count", option="factor",
              value=self.factor, allowed="> 0 and != 1")


@ADVERSARIES.register("inflated-count")
class InflatedCount(Adversary):
    """Lies about its example count (its aggregation weight)."""

    Config = InflatedCountConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        claimed = max(1, round(update.num_examples * self.config.factor))
        return LocalUpdate(tensors=update.tensors, num_examples=claimed,
                           train_loss=update.train_loss)
