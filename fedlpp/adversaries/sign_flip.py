"""``sign-flip``: sends the received model moved *against* its own training progress,
``received - (trained - received)``: a plausible-looking update that undoes learning."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fedlpp.adversaries.base import ADVERSARIES, Adversary
from fedlpp.protocol.records import LocalUpdate


@ADVERSARIES.register("sign-flip")
class SignFlip(Adversary):
    """Negates its update's progress (finite, same norm as an honest update)."""

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        flipped = {n: (2 * received[n].to(t.dtype) - t) for n, t in update.tensors.items()}
        return LocalUpdate(tensors=flipped, num_examples=update.num_examples,
                           train_loss=update.train_loss)
