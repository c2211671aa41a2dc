"""Combine every payload received into one estimate of the last master.

The master moves by the aggregate update each round, so the last master ``m_R`` satisfies
``m_R = m_r + (movement of rounds r..R-1)`` for every earlier round r. Each round's payload
bounds ``m_r`` to a box (``Quantizer.interval``); shifting it by an estimate of the movement
since then gives a box for ``m_R``, and the boxes of all rounds are intersected. The movement of
round r is estimated from the attacker's own update: ``server_lr * (own update - proxy it
started from)`` (colluders: the example-weighted mean of theirs; rounds the attacker skipped
count as no movement). Where a shifted box is disjoint from the newer ones (the estimate was
off), it is dropped for that element (:func:`intervals.tighten`). With a stochastic quantizer
each proxy is an unbiased estimate of its master, so the shifted proxies are also averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig
from attacks.recovery.intervals import clamp_into, midpoint, payload_boxes, shift, tighten
from attacks.recovery.local_finetune import check_option
from fedlpp.federation.aggregate import weighted_mean
from fedlpp.quant import quantizer_for

MOVEMENTS = ("own", "none")
POINTS = ("auto", "mean", "midpoint")


@dataclass
class TrajectoryConfig(RecoveryConfig):
    """``movement``: ``own`` (estimate each round's movement from the attacker's updates) or
    ``none`` (assume the master did not move). ``point``: the estimate picked in the final box:
    ``mean`` (average of the shifted proxies, clamped into the box), ``midpoint`` (its centre)
    or ``auto`` (``mean`` for a stochastic quantizer, whose proxies are unbiased, else
    ``midpoint``)."""

    movement: str = "own"
    point: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, allowed in (("movement", MOVEMENTS), ("point", POINTS)):
            value = getattr(self, option)
            check_option(value in allowed, attack="trajectory", option=option, value=value,
                         allowed=", ".join(allowed))


def own_movement(obs: Observation, rnd: int, proxy: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Estimated change of the master in round ``rnd`` from the view's own updates of that round."""
    fed = obs.ctx.trace.config.fed
    mine = [c for c in obs.clients if c in obs.ctx.trace.participants(rnd)]
    if not mine:
        return {}
    # each colluder knows how many records it trained on, i.e. its weight in the server's mean
    weights = [len(Observation(obs.threat_model, obs.ctx, (c,)).own_records()) for c in mine]
    mean = weighted_mean([obs.update(rnd, c) for c in mine], weights=weights)
    # straight-through: master += server_lr * (mean - broadcast); replace: master = mean
    step = fed.server_lr if fed.aggregation == "straight_through" else 1.0
    return {n: step * (u - proxy[n].float()) for n, u in mean.items()}


def trajectory(obs: Observation, *, config: TrajectoryConfig) -> AttackResult:
    """Estimate the master of the last payload round ``obs`` received, newest payload first."""
    rounds = obs.payload_rounds()
    last = rounds[-1]
    boxes, sums, dropped, moved_by = {}, {}, {}, {}
    point = config.point
    for rnd in reversed(rounds):
        packed = obs.payload(rnd)
        proxy = obs.ctx.dequantize(packed)
        if point == "auto":
            point = "midpoint" if quantizer_for(next(iter(packed.values()))).deterministic else "mean"
        if rnd < last and config.movement == "own":  # m_last = m_rnd + movements of rnd..last-1
            for name, delta in own_movement(obs, rnd, proxy).items():
                moved_by[name] = moved_by[name] + delta if name in moved_by else delta
        for name, box in payload_boxes(packed).items():
            by = moved_by[name] if name in moved_by else torch.zeros(())
            box, guess = shift(box, by), proxy[name].float() + by
            if name not in boxes:
                boxes[name], sums[name], dropped[name] = box, guess, torch.zeros(box[0].shape)
            else:
                boxes[name], conflict = tighten(boxes[name], box)
                sums[name] += guess
                dropped[name] += conflict
    recovered = {
        name: (clamp_into(sums[name] / len(rounds), box) if point == "mean" else midpoint(box))
        .to(proxy[name].dtype)
        for name, box in boxes.items()
    }
    numel = sum(d.numel() for d in dropped.values())
    extra = {"rounds_used": len(rounds), "point": point,
             "conflict_fraction": sum(float((d > 0).sum()) for d in dropped.values()) / numel,
             "mean_box_width": float(sum((b[1] - b[0]).abs().sum() for b in boxes.values()) / numel)}
    return AttackResult(recovered=recovered, round=last, extra=extra)


@ATTACKS.register("trajectory")
class Trajectory(RecoveryAttack):
    """Intersect every received payload's box, each shifted by the estimated movement since."""

    Config = TrajectoryConfig
    summary = "recovery: intersect all payloads' intervals, shifted by the own-update movement"

    def run(self, obs: Observation) -> AttackResult:
        return trajectory(obs, config=self.config)
