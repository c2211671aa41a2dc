"""Example plugin: a defense that rejects updates with an outsized value, added without touching
fedlpp-bench.

An honest client starts from the broadcast and takes a few small optimizer steps, so no single
value of its update moves far from what it received; a boosted or replaced update does. The
server's own check bounds the norm of the whole update (``fed.max_update_norm``); this bounds
each value, which an update trips even when it moves only a few of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedlpp.defenses import DEFENSES, Defense, Rejected
from fedlpp.errors import FedlppError

Tensors = Mapping[str, torch.Tensor]


@dataclass
class MaxChangeConfig:
    """``limit``: how far any one value may move from the broadcast (> 0)."""

    limit: float = 1.0

    def __post_init__(self) -> None:
        ok = (isinstance(self.limit, int | float) and not isinstance(self.limit, bool)
              and self.limit > 0)  # NaN fails the comparison too
        if not ok:
            raise FedlppError(f"Invalid limit: {self.limit!r} for defense 'max-change' "
                              f"(allowed: a number > 0)")


def largest_change(tensors: Tensors, *, broadcast: Tensors) -> tuple[float, str]:
    """The largest absolute difference between ``tensors`` and ``broadcast``, and its tensor."""
    largest, where = 0.0, ""
    for name, t in tensors.items():
        if t.numel():
            change = float((t.float() - broadcast[name].float()).abs().max())
            if change > largest:
                largest, where = change, name
    return largest, where


@DEFENSES.register("max-change")
class MaxChange(Defense):
    """Rejects an update that moves any value more than `limit` (example plugin)."""

    Config = MaxChangeConfig

    def __init__(self, config: MaxChangeConfig | None = None) -> None:
        super().__init__(config)
        self.checked = 0
        self.rejected_clients: list[int] = []  # one entry per rejected update

    def on_update(self, rnd: int, client: int, tensors: Tensors, *, broadcast: Tensors) -> Tensors:
        self.checked += 1
        change, where = largest_change(tensors, broadcast=broadcast)
        if change > self.config.limit:
            self.rejected_clients.append(client)
            raise Rejected(f"max-change: a value of {where} moved {change:.4g} from the broadcast "
                           f"(limit {self.config.limit:g})")
        return tensors

    def report(self) -> dict[str, Any]:
        return {"checked": self.checked, "rejected": len(self.rejected_clients),
                "rejected_clients": sorted(set(self.rejected_clients))}
