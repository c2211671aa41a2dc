"""Example plugin: a model-recovery attack, added without touching fedlpp-bench.

A malicious client averages the last ``k`` payloads it received, dequantized. Where each
broadcast carries fresh noise (a stochastic quantizer, ``noise-before-quantize``, the example
``secret-mask``) and the master moves little between rounds, that noise partly cancels in the
mean; a deterministic quantizer's error does not, and where the master moves a lot the older
payloads pull the estimate back in time. ``as-is`` is the ``k = 1`` case, so reports comparing
the two show what averaging adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig
from fedlpp.errors import FedlppError


@dataclass
class MeanOfLastConfig(RecoveryConfig):
    """Options of ``mean-of-last``: the attacking client and how many payloads it averages."""

    k: int = 3  # the last k payloads received are averaged (>= 1; all, if it received fewer)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:  # its type is checked where the options are built
            raise FedlppError(f"Invalid k: {self.k!r} for attack 'mean-of-last' "
                              "(allowed: an integer >= 1, the payloads averaged)")


def mean_of(proxies: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The value-wise mean of dequantized payloads (same names), in each tensor's dtype."""
    out = {}
    for name, first in proxies[0].items():
        total = sum(p[name].double() for p in proxies)
        out[name] = (total / len(proxies)).to(first.dtype)
    return out


@ATTACKS.register("mean-of-last")
class MeanOfLast(RecoveryAttack):
    """Use the mean of the last `k` dequantized payloads received as the recovered model."""

    Config = MeanOfLastConfig
    summary = "recovery: the mean of the last k payloads received (example plugin)"

    def run(self, obs: Observation) -> AttackResult:
        rounds = obs.payload_rounds()[-self.config.k:]
        # No control (None), as for ``as-is`` and ``final-box``: the attack trains nothing, so
        # its no-payload control (the same budget from the public start) would be the public
        # start itself: in scope ``adapter`` the base model, whose gain is 0 by definition.
        return AttackResult(recovered=mean_of([obs.proxy(r) for r in rounds]), round=rounds[-1],
                            extra={"averaged_rounds": rounds})
