"""The local trainer's signature: what a client calls to train, and what a defense that acts
inside local training (``around_training``, e.g. DP-SGD) receives and must return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from fedlpp.protocol.records import Step

StepCallback = Callable[[Step], None]


class Trainer(Protocol):
    """Trains ``model``'s trainable tensors in place on ``data`` for ``steps`` seeded batches;
    returns the per-step losses (:func:`fedlpp.federation.client.local_train` is the default)."""

    def __call__(self, *, model: torch.nn.Module, data: Mapping[str, torch.Tensor], steps: int,
                 batch_size: int, lr: float, weight_decay: float = 0.0, seed: int,
                 on_step: StepCallback | None = None,
                 project: Callable[[], None] | None = None) -> list[float]: ...
