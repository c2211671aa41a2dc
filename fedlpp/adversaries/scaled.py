"""``scaled``: its training progress multiplied by ``factor``, ``received + factor * (trained -
received)`` (model replacement / boosting: one client pulls the mean its way)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check
from fedlpp.protocol.records import LocalUpdate


@dataclass
class ScaledConfig(Targeting):
    """``factor``: how much the client's progress is scaled (finite)."""

    factor: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.factor), behaviour="scaled", option="factor", value=self.factor,
              allowed="a finite number")


@ADVERSARIES.register("scaled")
class Scaled(Adversary):
    """Boosts its update's progress by a factor."""

    Config = ScaledConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        k = self.config.factor
        out = {n: received[n].to(t.dtype) + k * (t - received[n].to(t.dtype))
               for n, t in update.tensors.items()}
        return LocalUpdate(tensors=out, num_examples=update.num_examples,
                           train_loss=update.train_loss)
