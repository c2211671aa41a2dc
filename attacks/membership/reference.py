"""Reference-model calibration (Carlini et al. 2021 "Extracting Training Data"; Watson et al.
2022, "On the Importance of Difficulty Calibration in Membership Inference Attacks"): subtract
how hard the record is for a model that never trained on it.

Score = ``loss_ref - loss_target`` (per-record mean NLL). The reference is the natural one of the
target (:meth:`MembershipAttack.reference_signals`): the public base model for ``central`` and
``proxy``, and for ``update`` the broadcast the client started its last local training from.
"""

from __future__ import annotations

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.signals import SampleSignals


@ATTACKS.register("reference")
class ReferenceAttack(MembershipAttack):
    """Score = reference loss - target loss."""

    summary = "membership: loss drop from a reference model (base / starting broadcast) to the target"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return self.reference_signals(obs, indices).loss - target.loss
