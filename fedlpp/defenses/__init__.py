"""Defenses: plugins that act at the round engine's named hooks.

A defense is one file: a :class:`Defense` subclass with its own ``Config`` dataclass, registered
with ``@DEFENSES.register("name")``, chosen in the config as a list of tables
(``defenses = [{name = "...", option = value}]``) and applied in that order. Third-party
packages add defenses through the entry-point group ``fedlpp.defenses``.

The hooks, in the order a round meets them:

* ``bind(seed=, fed=)``: once, before the first round: the run seed (a defense's random draws
  derive from it) and the federation's settings (clients, rounds, batch size: what an
  accountant needs).
* ``before_broadcast(rnd, tensors, static=)``: the server's tensors about to be quantized for
  round ``rnd`` (e.g. dithering; ``static`` names the ones training never changes); returns what
  to quantize. The master itself is not changed.
* ``around_training(train, client=, rnd=)``: wraps client ``client``'s local trainer in round
  ``rnd`` (e.g. DP-SGD); returns a trainer with the same signature as
  :func:`fedlpp.federation.client.local_train`.
* ``on_update(rnd, client, tensors, broadcast=...)``: each received update after validation
  (e.g. clipping); returns the tensors to aggregate, or raises :class:`Rejected`.
* ``after_aggregate(rnd, mean, broadcast=..., weights=...)``: the aggregate before it updates
  the master (e.g. noise), with the aggregation weight of each client in it; returns the
  aggregate to apply.

``report()`` is written into ``result.json`` (epsilon spent, share clipped, noise scale, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fedlpp.config import FedConfig
from fedlpp.protocol.trainer import Trainer
from fedlpp.registry import NoOptions, Plugin, Registry

DEFENSES = Registry("defense", group="fedlpp.defenses", builtins=["fedlpp.defenses.*"])

Tensors = Mapping[str, torch.Tensor]


class Rejected(Exception):
    """Raised by ``Defense.on_update`` to refuse an update; the message is the recorded reason."""


class HookFailed(RuntimeError):
    """A plugin's hook raised: names the round, the hook and the plugin it came from (e.g. a
    defense's ``before_broadcast`` while the server prepared round 2's broadcast); the
    original error is ``__cause__`` and ``error``, its one line."""

    def __init__(self, *, rnd: int, hook: str, plugin: str, exc: BaseException) -> None:
        self.rnd, self.hook, self.plugin = rnd, hook, plugin
        self.error = " ".join(f"{type(exc).__name__}: {exc}".split())
        super().__init__(f"round {rnd}, hook {hook} of {plugin}: {self.error}")


class Defense(Plugin):
    """Base class of defenses: every hook defaults to doing nothing."""

    seed: int = 0
    fed: FedConfig | None = None

    def bind(self, *, seed: int, fed: FedConfig) -> None:
        """The run this defense serves (called once, before the first round)."""
        self.seed, self.fed = seed, fed

    def before_broadcast(self, rnd: int, tensors: Tensors, *, static: frozenset[str]) -> Tensors:
        return tensors

    def around_training(self, train: Trainer, *, client: int, rnd: int) -> Trainer:
        return train

    def on_update(self, rnd: int, client: int, tensors: Tensors, *, broadcast: Tensors) -> Tensors:
        return tensors

    def after_aggregate(self, rnd: int, mean: Tensors, *, broadcast: Tensors,
                        weights: Mapping[int, float]) -> Tensors:
        return mean

    def report(self) -> dict[str, Any]:
        """What the defense did, for ``result.json``."""
        return {}


def build_defenses(tables: list[Any]) -> list[Defense]:
    """The configured defenses, in order (``defenses[i]`` names the bad table in errors)."""
    return [DEFENSES.build_table(t, where=f"defenses[{i}]") for i, t in enumerate(tables)]


__all__ = ["DEFENSES", "Defense", "HookFailed", "NoOptions", "Rejected", "Trainer",
           "build_defenses"]
