"""The midpoint of the last payload's box: the trivial baseline of every interval attack.

A payload pins each full-precision value to the interval of values that quantize to its code
(``Quantizer.interval``); the interval's midpoint is the estimate no value in it is farther
from. It needs one payload and no history, so an attack that combines payloads (``trajectory``)
or trains inside the box (``box-pgd``) leaks more than the quantizer's own resolution only by
what it adds to this number: reports show ``final-box`` beside them. Under a deterministic
quantizer it differs from ``as-is`` where the levels are not the centres of their intervals
(NormalFloat's are not). Under a stochastic one the box spans both neighbouring levels and
``as-is`` (an unbiased proxy) is the closer baseline. It needs no control: it trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig
from attacks.recovery.intervals import midpoint, payload_boxes


@dataclass
class FinalBoxConfig(RecoveryConfig):
    """No options beyond the attacking client."""


@ATTACKS.register("final-box")
class FinalBox(RecoveryAttack):
    """Use the midpoint of the last received payload's value intervals as the recovered model."""

    Config = FinalBoxConfig
    summary = "recovery: the midpoint of the last payload's intervals (baseline of trajectory)"

    def run(self, obs: Observation) -> AttackResult:
        rnd = obs.payload_rounds()[-1]
        boxes = payload_boxes(obs.payload(rnd))  # raises for quantizers without intervals
        width = sum(float((hi - lo).sum()) for lo, hi in boxes.values())
        numel = sum(lo.numel() for lo, _ in boxes.values())
        return AttackResult(recovered={n: midpoint(box) for n, box in boxes.items()}, round=rnd,
                            extra={"mean_box_width": width / max(numel, 1)})
