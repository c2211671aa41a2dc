"""Reference-model calibration (Carlini et al., "Extracting Training Data from Large Language
Models", USENIX Security 2021, its "Small" / "Medium" metrics; Watson et al., "On the Importance of
Difficulty Calibration in Membership Inference Attacks", ICLR 2022): compare how hard the record
is for the target with how hard it is for a model that never trained on it.

Exact formulas, per record (``L`` = mean NLL in nats over the record's scored tokens; higher
score = member):

* ``form = "difference"`` (Watson et al.'s calibrated loss)::

      score = L_ref - L_target

* ``form = "ratio"`` (Carlini et al.'s ratio of log-perplexities, lower = memorised, negated)::

      score = -L_target / max(L_ref, 1e-12)

  (the floor only keeps a record the reference is certain of, or one with no scored token,
  from dividing by 0).

The reference is the natural one of the target (:meth:`MembershipAttack.reference_signals`): the
public base model with the run's LoRA init for ``central`` and ``proxy`` (in scope ``full``, where
the base weights are private, the round-1 payload a client actually received), and for ``update``
the broadcast the client started its last local training from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack, MembershipConfig
from attacks.signals import SampleSignals
from fedlpp.errors import FedlppError

FORMS = ("difference", "ratio")
LOSS_FLOOR = 1e-12


@dataclass
class ReferenceConfig(MembershipConfig):
    """Options of ``reference``."""

    form: Literal["difference", "ratio"] = "difference"  # L_ref - L_target, or -L_target / L_ref

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in FORMS:
            raise FedlppError(f"Invalid form: {self.form!r} (allowed: {', '.join(FORMS)})")


def calibrated(*, target_loss: np.ndarray, reference_loss: np.ndarray, form: str) -> np.ndarray:
    """Per record, the score of ``form`` from mean NLLs (higher = member), as in the module doc."""
    target_loss = np.asarray(target_loss, dtype=np.float64)
    reference_loss = np.asarray(reference_loss, dtype=np.float64)
    if form == "difference":
        return reference_loss - target_loss
    if form == "ratio":
        return -target_loss / np.maximum(reference_loss, LOSS_FLOOR)
    raise FedlppError(f"Invalid form: {form!r} (allowed: {', '.join(FORMS)})")


@ATTACKS.register("reference")
class ReferenceAttack(MembershipAttack):
    """Score = reference loss - target loss, or -(target loss / reference loss)."""

    Config = ReferenceConfig
    summary = ("membership: target loss calibrated by a reference model (base / starting "
               "broadcast), as a difference or Carlini et al.'s ratio")

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return calibrated(target_loss=target.loss,
                          reference_loss=self.reference_signals(obs, indices).loss,
                          form=self.config.form)
