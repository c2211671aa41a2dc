"""``wrong-shape``: one tensor of the update has another shape (a client running another model
or LoRA rank); it is encoded as it is, so its layout differs from the server's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check
from fedlpp.protocol.records import LocalUpdate


@dataclass
class WrongShapeConfig(Targeting):
    """``rows``: rows added to (> 0) or removed from (< 0) the update's first tensor."""

    rows: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.rows != 0, behaviour="wrong-shape", option="rows", value=self.rows,
              allowed="a non-zero integer")


@ADVERSARIES.register("wrong-shape")
class WrongShape(Adversary):
    """Sends a tensor of the wrong shape."""

    Config = WrongShapeConfig

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        tensors = dict(update.tensors)
        name = next(iter(tensors))
        t = tensors[name]
        rows = self.config.rows
        if rows > 0:
            tensors[name] = torch.cat([t, torch.zeros((rows, *t.shape[1:]), dtype=t.dtype)])
        else:
            tensors[name] = t[: max(0, t.shape[0] + rows)].clone()
        return LocalUpdate(tensors=tensors, num_examples=update.num_examples,
                           train_loss=update.train_loss)
