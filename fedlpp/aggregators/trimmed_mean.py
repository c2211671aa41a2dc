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

    Example counts are ignored. Keeps every update of the round. When ``floor(beta * n)`` is 0
    (few updates, e.g. rejections left 3 with beta 0.2) nothing is trimmed and the result is
    the plain unweighted mean: :meth:`report` then says so in the round's ``aggregation``.
    """

    Config = TrimmedMeanConfig

    def result(self) -> dict[str, torch.Tensor]:
        self.require_updates()
        trim = trim_count(self.config.beta, n=self.count)
        return {n: trimmed_mean(stack(self.updates, name=n), trim=trim) for n in self.updates[0]}

    def report(self) -> dict[str, Any]:
        beta, n = self.config.beta, self.count
        trim = trim_count(beta, n=n)
        out: dict[str, Any] = {"trimmed_each_end": trim, "updates": n}
        if trim == 0 and beta > 0 and n:
            out["untrimmed"] = (f"floor(beta*n) = floor({beta:g}*{n}) = 0: nothing trimmed, the "
                                f"plain mean of the {n} accepted update{'s' if n != 1 else ''}")
        return out
