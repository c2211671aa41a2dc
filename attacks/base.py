"""The attack plugin interface: a registry, the ``Attack`` base class and its result.

An attack is one file: a class with its own ``Config`` dataclass, registered with
``@ATTACKS.register("name")``. Third-party packages add attacks through the entry-point group
``fedlpp.attacks`` (the entry point's module registers them on import).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from attacks.context import Observation
from fedlpp.errors import FedlppError
from fedlpp.registry import Registry

ATTACKS = Registry("attack", group="fedlpp.attacks",
                   builtins=["attacks.membership.*", "attacks.recovery.*"])


class NotApplicable(FedlppError):
    """Raised by an attack that cannot apply to this run (e.g. its target holds no trained
    records: one client has no other clients): recorded as ``not_applicable`` with this
    message, not as a failure."""


@dataclass
class AttackResult:
    """What an attack returns; the runner turns it into metrics.

    A model-recovery attack fills ``recovered`` (private tensors of its estimate of the master)
    and ``round`` (which round's master it estimates; ``num_rounds + 1`` = the final one).
    A membership attack fills ``scores`` (higher = more likely a member) and ``labels``
    (1 = member), aligned with ``indices`` (record ids).

    Controls (what the same measurement shows where there is nothing to find):

    * ``control_scores`` (membership): the same attack's scores on the same candidates from the
      *untrained* model (the base model for ``central`` / ``proxy``; for ``update``, the
      broadcast the client started from). Its AUC is what record selection alone gives.
    * ``control`` (recovery): the no-payload control, i.e. the private tensors the attacker gets
      with the same budget and data started from the public starting point instead of the
      payloads (None for attacks without such a control, e.g. ``as-is``).
    """

    recovered: dict[str, torch.Tensor] | None = None
    round: int | None = None
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None
    indices: np.ndarray | None = None
    control_scores: np.ndarray | None = None
    control: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """Base class of every attack.

    Class attributes:
        Config: the dataclass of the attack's hyperparameters (validated in ``__post_init__``).
        kind: ``"recovery"`` or ``"membership"``.
        summary: one line for ``fedlpp ls attacks``.
    """

    Config: ClassVar[type]
    kind: ClassVar[str]
    summary: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    @abstractmethod
    def threat_model(self) -> str:
        """Which party this attack (as configured) plays: outsider, client, colluding, server."""

    def attackers(self) -> tuple[int, ...]:
        """The clients this attack controls (client / colluding threat models)."""
        return ()

    @abstractmethod
    def run(self, obs: Observation) -> AttackResult:
        """Attack what ``obs`` shows and return the result."""
