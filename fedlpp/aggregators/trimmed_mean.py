"""``trimmed-mean``: the coordinate-wise trimmed mean of the updates (Yin et al. 2018),
unweighted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.aggregators import AGGREGATORS, Buffered, check_option
from fedlpp.aggregators.robust import stack, trim_count, trimmed_mean


@dataclass
class TrimmedMeanConfig:
    """``beta``: the share of values dropped at each end of every coordinate, 0 <= beta < 0.5
    (``floor(beta * n)`` values each; 0 = the unweighted mean)."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        check_option(0 <= self.beta < 0.5, rule="trimmed-mean", option="beta", value=self.beta,
                     allowed="0 <= beta < 0.5")


@AGGREGATORS.register("trimmed-mean")
class TrimmedMean(Buffered):
    """Coordinate-wise mean without the floor(beta*n) largest and smallest values, unweighted.

    Example counts are ignored. Keeps every update of the round.
    """

    Config = TrimmedMeanConfig

    def result(self) -> dict[str, torch.Tensor]:
        self.require_updates()
        trim = trim_count(self.config.beta, n=self.count)
        return {n: trimmed_mean(stack(self.updates, name=n), trim=trim) for n in self.updates[0]}

    def report(self) -> dict[str, Any]:
        return {"trimmed_each_end": trim_count(self.config.beta, n=self.count),
                "updates": self.count}
