"""The adversarial behaviour interface: which clients and rounds, and two places to act.

A behaviour edits a client's honest result at one of two points of its round: the trained
tensors and example count before encoding (:meth:`Adversary.tamper_update`), or the encoded
message (:meth:`Adversary.tamper_message`). Every random choice comes from the generator the
client step passes, seeded by the run seed, round and client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from fedlpp.errors import FedlppError
from fedlpp.protocol.records import LocalUpdate
from fedlpp.registry import Plugin, Registry

ADVERSARIES = Registry("adversary behaviour", group="fedlpp.adversaries",
                       builtins=["fedlpp.adversaries.*"])


def check(ok: bool, *, behaviour: str | None, option: str, value: Any, allowed: str) -> None:
    """A one-line FedlppError for a bad behaviour option."""
    if not ok:
        of = f" for adversary behaviour '{behaviour}'" if behaviour else ""
        raise FedlppError(f"Invalid {option}: {value!r}{of} (allowed: {allowed})")


@dataclass
class Targeting:
    """Options every behaviour has: the clients that behave so and the rounds (empty = all)."""

    clients: list[int] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(bool(self.clients) and all(c >= 0 for c in self.clients), behaviour=None,
              option="clients", value=self.clients, allowed="a non-empty list of client ids >= 0")
        check(all(r >= 1 for r in self.rounds), behaviour=None, option="rounds",
              value=self.rounds, allowed="round numbers >= 1 (empty = every round)")


class Adversary(Plugin):
    """Base class: both hooks default to the honest result."""

    Config: ClassVar[type] = Targeting

    def acts(self, *, client: int, rnd: int) -> bool:
        """Whether this behaviour applies to ``client`` in round ``rnd``."""
        return client in self.config.clients and (not self.config.rounds or rnd in self.config.rounds)

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        """Edit the trained tensors / example count; ``received`` is what the client started from."""
        return update

    def tamper_message(self, message: bytes, *, rng: np.random.Generator) -> bytes:
        """Edit the encoded upload message."""
        return message


@dataclass
class FractionConfig(Targeting):
    """``fraction`` of each tensor's values overwritten (at least one)."""

    fraction: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.fraction <= 1, behaviour=None, option="fraction", value=self.fraction,
              allowed="0 < fraction <= 1")


class OverwriteValues(Adversary):
    """Overwrites ``config.fraction`` of each tensor's values with ``value`` (``random_sign``:
    each with a random sign); subclasses set the two."""

    Config: ClassVar[type] = FractionConfig
    value: ClassVar[float]
    random_sign: ClassVar[bool] = False

    def tamper_update(self, update: LocalUpdate, *, received: Mapping[str, torch.Tensor],
                      rng: torch.Generator) -> LocalUpdate:
        return overwrite_values(update, fraction=self.config.fraction, rng=rng,
                                value=self.fill_value(), random_sign=self.random_sign)

    def fill_value(self) -> float:
        """The value written (the class's ``value`` unless a subclass makes it an option)."""
        return self.value


def overwrite_values(update: LocalUpdate, *, fraction: float, rng: torch.Generator,
                     value: float, random_sign: bool) -> LocalUpdate:
    """``update`` with ``ceil(fraction * numel)`` values of every tensor (at least one, at seeded
    random positions) set to ``value`` (with a random sign when ``random_sign``)."""
    out = {}
    for name, t in update.tensors.items():
        t = t.clone()
        flat = t.view(-1)
        k = min(flat.numel(), max(1, math.ceil(fraction * flat.numel())))
        idx = torch.randperm(flat.numel(), generator=rng)[:k]
        fill = torch.full((k,), value, dtype=t.dtype)
        if random_sign:
            fill *= torch.randint(0, 2, (k,), generator=rng).to(t.dtype) * 2 - 1
        flat[idx] = fill
        out[name] = t
    return LocalUpdate(tensors=out, num_examples=update.num_examples,
                       train_loss=update.train_loss)
