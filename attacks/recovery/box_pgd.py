"""Projected gradient descent inside the box of values the last payload allows.

After Egashira et al., "Exploiting LLM Quantization" (2024): a block's scale and a weight's code
pin the full-precision weight to the interval of values that round to that code
(``Quantizer.interval``). Training on local data while clamping into those intervals after every
step moves toward a model that fits the data *and* is consistent with the payload, so the
recovered model can never stray farther from the master than the payload allows.

Its ``control`` is ``local-finetune``'s (:func:`train_control`): the same budget, seed and
records from the public starting point. The control has no payload, hence no box to project
into, so it trains unconstrained; the difference between the two is what the payload (its
starting point and its box together) adds to the attacker's own data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack
from attacks.recovery.intervals import Box, clamp_into, midpoint, payload_boxes
from attacks.recovery.local_finetune import (
    LocalFinetuneConfig,
    check_option,
    train_control,
    train_from,
)

STARTS = ("proxy", "center")


@dataclass
class BoxPGDConfig(LocalFinetuneConfig):
    """The fine-tuning budget of ``local-finetune`` plus where the descent starts.

    ``start``: ``proxy`` (the dequantized payload) or ``center`` (the midpoint of each interval).
    Tensors that are private but not trained (scope ``full``: the base weights) stay at that
    same starting point, so ``start`` also picks the estimate of the base.
    """

    attack: ClassVar[str] = "box-pgd"
    start: str = "proxy"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option(self.start in STARTS, attack=self.attack, option="start", value=self.start,
                     allowed=", ".join(STARTS))


def box_start(proxy: dict[str, torch.Tensor], boxes: dict[str, Box], *,
              start: str) -> dict[str, torch.Tensor]:
    """The starting tensors: the proxy or the interval midpoints, inside the boxes."""
    if start == "center":
        return {n: midpoint(boxes[n]).to(proxy[n].dtype) for n in proxy}
    return {n: clamp_into(proxy[n].float(), boxes[n]).to(proxy[n].dtype) for n in proxy}


def box_pgd(obs: Observation, *, config: BoxPGDConfig) -> AttackResult:
    """Run box-constrained fine-tuning on what ``obs`` shows (one client or a pooled view)."""
    rnd = obs.payload_rounds()[-1]
    packed = obs.payload(rnd)
    boxes = payload_boxes(packed)  # raises first for quantizers without intervals
    start = box_start(obs.ctx.dequantize(packed), boxes, start=config.start)
    params = {n: p for n, p in obs.ctx.model.named_parameters() if p.requires_grad and n in boxes}
    # the boxes where the model computes (the same tensors on the CPU)
    boxes = {n: (lo.to(params[n].device), hi.to(params[n].device)) if n in params else (lo, hi)
             for n, (lo, hi) in boxes.items()}

    def project() -> None:  # after every optimizer step, back into the payload's box
        for name, p in params.items():
            p.copy_(clamp_into(p, boxes[name]))

    recovered, budget = train_from(obs, start=start, config=config, project=project)
    control, control_start = train_control(obs, config=config)  # no payload: no box either
    return AttackResult(recovered=recovered, round=rnd, control=control,
                        extra={**budget, "trained_tensors": len(params),
                               "control_start": control_start})


@ATTACKS.register("box-pgd")
class BoxPGD(RecoveryAttack):
    """Fine-tune on local data, clamped after every step into the last payload's intervals."""

    Config = BoxPGDConfig
    summary = "recovery: PGD on local data inside the payload's value intervals (Egashira 2024)"

    def run(self, obs: Observation) -> AttackResult:
        return box_pgd(obs, config=self.config)
