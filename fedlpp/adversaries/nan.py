"""``nan``: NaN in place of some of the trained values (a diverged or malicious client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check, overwrite_values
from fedlpp.federation.records import LocalUpdate


@dataclass
class NanConfig(Targeting):
    """``fraction`` of each tensor's values set to NaN (at least one)."""

    fraction: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.fraction <= 1, behaviour="nan", option="fraction", value=self.fraction,
              allowed="0 < fraction <= 1")


@ADVERSARIES.register("nan")
class Nan(Adversary):
    """Sends an update with NaN values."""

    Config = NanConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        return overwrite_values(update, fraction=self.config.fraction, rng=rng,
                                value=float("nan"), random_sign=False)
