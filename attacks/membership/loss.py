"""LOSS attack (Yeom et al., 2018): members have lower loss."""

from __future__ import annotations

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.signals import SampleSignals


@ATTACKS.register("loss")
class LossAttack(MembershipAttack):
    """Score = -loss of the target model on the record."""

    summary = "membership: negative loss of the target (Yeom et al. 2018)"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return -target.loss
