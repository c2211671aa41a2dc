"""Shared shape of model-recovery attacks: one malicious client rebuilds the master.

The attacker sees every payload it was sent (the final delivered broadcast included), its own
updates and its own training data. It returns its estimate of the master's private tensors,
and, when it fine-tunes, the no-payload control: the same training from :func:`public_start`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Attack
from attacks.context import Observation
from fedlpp.errors import FedlppError
from fedlpp.federation.client import local_train
from fedlpp.models import trainable_state


@dataclass
class RecoveryConfig:
    """Options every single-client recovery attack has."""

    client: int = 0  # the malicious client

    def __post_init__(self) -> None:
        if self.client < 0:
            raise FedlppError(f"Invalid client: {self.client} (allowed: >= 0)")


class RecoveryAttack(Attack):
    """A client-side attack; subclasses implement ``run``."""

    kind = "recovery"
    Config = RecoveryConfig

    @property
    def threat_model(self) -> str:
        return "client"

    def attackers(self) -> tuple[int, ...]:
        return (self.config.client,)


def public_start(obs: Observation) -> tuple[dict[str, torch.Tensor], str]:
    """Where an attacker with no payload would start: the best model it holds without one.

    The trainable tensors are the LoRA init (``ctx.initial``: seeded, so public in this
    codebase), loaded on the public base model. In scope ``full`` the base weights are private
    and a client holds only quantized copies of them, so the start takes them from the first
    payload the view received (all payloads carry the same ones under a deterministic
    quantizer); its LoRA tensors are not taken, since a payload later than round 1 carries
    training.

    Returns:
        The starting tensors, and a short description of them for ``AttackResult.extra``.
    """
    start = {n: t.clone() for n, t in obs.ctx.initial.items()}
    static = obs.ctx.run.static
    if not static:
        return start, "LoRA init on the public base"
    first = obs.payload_rounds()[0]
    start.update(obs.ctx.dequantize({n: p for n, p in obs.payload(first).items() if n in static}))
    return start, f"LoRA init on the base weights of the payload of round {first}"


def finetune(obs: Observation, *, start: dict[str, torch.Tensor], data: dict[str, torch.Tensor],
             steps: int, lr: float, batch_size: int, seed: int,
             project=None) -> dict[str, torch.Tensor]:
    """Train the trainable tensors from ``start`` on ``data``; returns all private tensors.

    Tensors of ``start`` that are not trainable (scope ``full``: the quantized base) stay as given.
    ``project`` (called after each step, under no_grad) keeps parameters in a feasible set.
    """
    with obs.ctx.loaded(start) as model:
        local_train(model=model, data=data, steps=steps, batch_size=batch_size, lr=lr,
                    seed=seed, project=project)
        return {**start, **trainable_state(model)}
