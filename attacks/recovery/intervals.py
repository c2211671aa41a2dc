"""Pure maths on elementwise value intervals (boxes) that recovery attacks derive from payloads.

A box is a pair ``(lo, hi)`` of same-shaped float tensors with ``lo <= hi``: every full-precision
value consistent with what was observed lies in ``[lo, hi]`` elementwise. A belief is a pair
``(mean, var)`` of same-shaped tensors: an elementwise Gaussian estimate of a value;
:func:`filter_boxes` tracks beliefs through a sequence of payloads (``trajectory``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fedlpp.errors import FedlppError
from fedlpp.quant import PackedTensor, quantizer_for

Box = tuple[Tensor, Tensor]
Belief = tuple[Tensor, Tensor]

LOG_FLOOR = -700.0  # log-likelihood of an element whose box the belief puts no mass in
RESET_MASS = 1e-9  # a belief with less mass than this in the box was wrong there
LOG_SQRT_2PI = math.log(2 * math.pi) / 2


def payload_boxes(packed: Mapping[str, PackedTensor]) -> dict[str, Box]:
    """The box of every tensor of a payload (``Quantizer.interval``).

    Raises:
        FedlppError: the payload's quantizer defines no intervals (e.g. ``bnb-int8``).
    """
    boxes = {}
    for name, p in packed.items():
        try:
            boxes[name] = quantizer_for(p).interval(p)
        except NotImplementedError as exc:
            raise FedlppError(f"This attack needs the value intervals of the payload, and "
                              f"quantizer '{p.quantizer}' gives none: {exc}") from None
    return boxes


def midpoint(box: Box) -> Tensor:
    """The centre of a box (its minimax point: no value in it is farther away)."""
    lo, hi = box
    return lo + (hi - lo) / 2


def clamp_into(x: Tensor, box: Box) -> Tensor:
    """``x`` projected onto the box (elementwise clamp), a new tensor."""
    return torch.maximum(torch.minimum(x, box[1]), box[0])


def uniform_belief(box: Box) -> Belief:
    """The belief that knows only the box: its midpoint, with the variance of a uniform on it."""
    width = box[1] - box[0]
    return midpoint(box), width * width / 12


def restrict(belief: Belief, box: Box) -> tuple[Belief, Tensor]:
    """A Gaussian belief told that the value lies in ``box``: the mean and variance of the
    Gaussian truncated to the box (moment matching), elementwise, in float64.

    A box of zero width (or only the float32 rounding margin of ``Quantizer.interval``) pins
    the value exactly (variance 0). Where the belief puts less than ``RESET_MASS`` in the box
    (it lies > ~6 sds away), the belief was wrong there: the result is :func:`uniform_belief`
    of the box. The belief's variance is expected > 0.

    Returns:
        The restricted belief (its mean always inside the box) and each element's
        log-likelihood of the box under the belief: ``log P(box) - log width`` (a density, for
        zero widths), floored at ``LOG_FLOOR``; comparable between beliefs about the same boxes.
    """
    (mean, var), (lo, hi) = belief, box
    sd = var.clamp_min(1e-300).sqrt()
    a, b = (lo - mean) / sd, (hi - mean) / sd
    upper = a > 0  # mirror the upper tail onto the lower one, where log_ndtr is precise
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    log_mass = lb + torch.log(-torch.expm1(la - lb))
    ka = torch.exp(-a * a / 2 - log_mass - LOG_SQRT_2PI)  # pdf(a) / mass
    kb = torch.exp(-b * b / 2 - log_mass - LOG_SQRT_2PI)
    ratio = ka - kb
    shift, factor = torch.where(upper, -ratio, ratio), 1 + a * ka - b * kb - ratio * ratio
    width = hi - lo
    uniform_mean, uniform_var = uniform_belief(box)
    new_mean, new_var = mean + sd * shift, var * factor
    ok = (log_mass > math.log(RESET_MASS)) & torch.isfinite(new_mean) & torch.isfinite(new_var)
    # a truncated Gaussian is log-concave, so its variance never exceeds the uniform's
    new_mean = torch.where(ok, clamp_into(new_mean, box), uniform_mean)
    new_var = torch.where(ok, torch.minimum(new_var.clamp_min(0), uniform_var), uniform_var)
    loglik = log_mass - torch.log(width.clamp_min(1e-300))
    point = width <= 1e-6 * torch.maximum(lo.abs(), hi.abs())  # 0, or the 4-eps margin
    density = -((uniform_mean - mean) / sd) ** 2 / 2 - torch.log(sd) - LOG_SQRT_2PI
    new_mean = torch.where(point, uniform_mean, new_mean)
    new_var = torch.where(point, torch.zeros_like(new_var), new_var)
    loglik = torch.where(point, density, loglik).nan_to_num(LOG_FLOOR).clamp_min(LOG_FLOOR)
    return (new_mean, new_var), loglik


def observe(belief: Belief, value: Tensor, noise: Tensor) -> tuple[Belief, Tensor]:
    """A Gaussian belief updated with an unbiased observation ``value`` of variance ``noise``
    (a Kalman measurement update), and each element's log-likelihood of the observation."""
    mean, var = belief
    total = (var + noise).clamp_min(1e-300)
    gain = var / total
    loglik = -(value - mean) ** 2 / (2 * total) - torch.log(total) / 2 - LOG_SQRT_2PI
    return (mean + gain * (value - mean), var * (1 - gain)), loglik.clamp_min(LOG_FLOOR)


def tent_variance(q: Tensor, box: Box) -> Tensor:
    """Variance of the triangular density on the box peaked at ``q``: where a value lies, given
    that stochastic rounding gave the level ``q`` (the box spans ``q``'s two neighbours)."""
    lo, hi = box
    return (lo * lo + q * q + hi * hi - lo * q - lo * hi - q * hi) / 18


@dataclass
class Step:
    """One payload of a sequence, as :func:`filter_boxes` reads it (float64 tensors by name)."""

    boxes: dict[str, Box]
    proxy: dict[str, Tensor]
    move: dict[str, Tensor] = field(default_factory=dict)  # estimated movement since last step
    unit: dict[str, float] = field(default_factory=dict)  # its RMS: the scale of its error
    gap: int = 0  # rounds in between whose movement is not estimated at all


def filter_boxes(steps: Sequence[Step], *, noise: float,
                 stochastic: bool) -> tuple[dict[str, Belief], float, float]:
    """Track each value through a sequence of payloads, oldest first.

    The first step's belief is its box (uniform; stochastic: the :func:`tent_variance` around
    its proxy). Each later step moves the belief by ``move``, adds variance
    ``(noise^2 + gap^2) * unit^2``, :func:`observe` s the proxy (``stochastic`` only: it is
    then unbiased), and :func:`restrict` s it to the box.

    Returns:
        The beliefs after the last step, the summed log-likelihood of what the later steps
        showed, and the fraction of their elements whose box lay more than 3 predicted standard
        deviations from the predicted mean (a calibration check: small when ``noise`` fits).
    """
    beliefs: dict[str, Belief] = {}
    loglik, surprised, seen = 0.0, 0, 0
    for step in steps:
        for n, box in step.boxes.items():
            q = step.proxy[n]
            if n not in beliefs:  # the first payload: only its box (and proxy) is known
                beliefs[n] = (q, tent_variance(q, box)) if stochastic else uniform_belief(box)
                continue
            mean, var = beliefs[n]
            unit = step.unit[n]
            belief = (mean + step.move[n], var + (noise**2 + step.gap**2) * unit**2)
            far = 3 * belief[1].sqrt()
            surprised += int(((box[0] - belief[0] > far) | (belief[0] - box[1] > far)).sum())
            seen += q.numel()
            if stochastic:
                belief, ll = observe(belief, q, tent_variance(q, box))
                loglik += float(ll.sum())
            beliefs[n], ll = restrict(belief, box)
            loglik += float(ll.sum())
    return beliefs, loglik, surprised / max(seen, 1)
