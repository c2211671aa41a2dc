"""``mean``: the example-weighted mean of the updates (FedAvg), streamed one update at a time."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fedlpp.aggregators import AGGREGATORS, Aggregator, check_weight


@AGGREGATORS.register("mean")
class WeightedMean(Aggregator):
    """Example-weighted mean of the updates (FedAvg), streamed.

    Each update is added to one float32 accumulator and dropped, so a round with many clients
    never holds every update.
    """

    def __init__(self, config: object = None) -> None:
        super().__init__(config)
        self.sum: dict[str, torch.Tensor] | None = None
        self.weight = 0.0

    def add(self, tensors: Mapping[str, torch.Tensor], *, weight: float, client: int = -1) -> None:
        check_weight(weight)
        if self.sum is None:
            self.sum = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in tensors.items()}
        for name, acc in self.sum.items():
            acc.add_(tensors[name].float(), alpha=float(weight))
        self.weight += float(weight)
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        if self.sum is None:
            raise ValueError("the mean of no updates is undefined")
        return {n: acc / self.weight for n, acc in self.sum.items()}
