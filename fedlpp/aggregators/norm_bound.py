"""``norm-bound``: each update's change from the broadcast clipped to an L2 norm bound, then the
example-weighted mean (Sun et al. 2019, "Can you really backdoor federated learning?")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.aggregators import AGGREGATORS, Aggregator, check_option, check_weight
from fedlpp.aggregators.mean import WeightedMean
from fedlpp.aggregators.robust import clip_factor, flatten


@dataclass
class NormBoundConfig:
    """``bound``: the largest L2 norm of an update's change from the broadcast, over all its
    tensors together (> 0; no default, since the scale of an honest change depends on the
    model and the local training)."""

    bound: float | None = None

    def __post_init__(self) -> None:
        check_option(self.bound is not None and self.bound > 0, rule="norm-bound", option="bound",
                     value=self.bound, allowed="a number > 0; set it, e.g. "
                     "aggregator={name=\"norm-bound\", bound=1.0}")


@AGGREGATORS.register("norm-bound")
class NormBound(Aggregator):
    """Each update's change from the broadcast clipped to L2 norm ``bound``, then weighted mean.

    The weights are the example counts, as for ``mean``; the rule streams. An update within the
    bound is aggregated unchanged.
    """

    Config = NormBoundConfig

    def __init__(self, config: NormBoundConfig | None = None) -> None:
        super().__init__(config)
        self.mean = WeightedMean()
        self.clipped = 0
        self.largest = 0.0  # the largest norm seen, before clipping

    def add(self, tensors: Mapping[str, torch.Tensor], *, weight: float, client: int = -1) -> None:
        check_weight(weight)
        sent = self.broadcast
        if sent is None:
            raise ValueError("norm-bound needs the broadcast the clients started from: call "
                             "begin(broadcast=...) before add()")
        names = list(tensors)
        norm = float((flatten(tensors, names=names) - flatten(sent, names=names)).norm())
        self.largest = max(self.largest, norm)
        scale = clip_factor(norm, bound=float(self.config.bound))
        if scale < 1.0:
            self.clipped += 1
            tensors = {n: (sent[n].double() + scale * (t.double() - sent[n].double())).float()
                       for n, t in tensors.items()}
        self.mean.add(tensors, weight=weight, client=client)
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        return self.mean.result()

    def report(self) -> dict[str, Any]:
        return {"clipped": self.clipped, "updates": self.count, "largest_norm": self.largest}
