"""``median``: the coordinate-wise median of the updates (Yin et al. 2018), unweighted."""

from __future__ import annotations

import torch

from fedlpp.aggregators import AGGREGATORS, Buffered
from fedlpp.aggregators.robust import coordinate_median, stack


@AGGREGATORS.register("median")
class Median(Buffered):
    """Coordinate-wise median of the updates, unweighted.

    Example counts are ignored; an even count takes the mean of the two middle values. Keeps
    every update of the round.
    """

    def result(self) -> dict[str, torch.Tensor]:
        self.require_updates()
        return {n: coordinate_median(stack(self.updates, name=n)) for n in self.updates[0]}
