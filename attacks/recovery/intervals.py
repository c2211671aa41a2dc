"""Pure maths on elementwise value intervals (boxes) that recovery attacks derive from payloads.

A box is a pair ``(lo, hi)`` of same-shaped float tensors with ``lo <= hi``: every full-precision
value consistent with what was observed lies in ``[lo, hi]`` elementwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from fedlpp.errors import FedlppError
from fedlpp.quant import PackedTensor, quantizer_for

Box = tuple[Tensor, Tensor]


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


def shift(box: Box, by: Tensor) -> Box:
    """The box moved by ``by`` (where its values are after they moved by ``by``)."""
    return box[0] + by, box[1] + by


def tighten(box: Box, older: Box) -> tuple[Box, Tensor]:
    """``box`` intersected with an ``older`` box, elementwise, only where the two overlap.

    Where they are disjoint (the older box's estimated shift was off) ``box`` is kept as it is.

    Returns:
        The tightened box, and a bool mask of the elements where ``older`` was dropped.
    """
    lo, hi = torch.maximum(box[0], older[0]), torch.minimum(box[1], older[1])
    ok = lo <= hi
    return (torch.where(ok, lo, box[0]), torch.where(ok, hi, box[1])), ~ok


def intersect_newest_first(boxes: Sequence[Box]) -> tuple[Box, Tensor]:
    """Intersect boxes ordered oldest to newest, trusting newer boxes more.

    Starts from the newest box and :func:`tighten` s it with each older one in turn. The result
    is never empty, and it is the plain intersection wherever the boxes are consistent.

    Returns:
        The box, and per element how many boxes were dropped as inconsistent (int64).
    """
    if not boxes:
        raise ValueError("intersect_newest_first needs at least one box")
    box = boxes[-1]
    dropped = torch.zeros(box[0].shape, dtype=torch.int64)
    for older in reversed(boxes[:-1]):
        box, conflict = tighten(box, older)
        dropped += conflict
    return box, dropped
