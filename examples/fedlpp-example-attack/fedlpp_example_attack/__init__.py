"""Example plugin: a membership attack on predictive entropy, added without touching fedlpp-bench.

Models are more confident (lower entropy) on records they were trained on, so the score is the
negative mean entropy of the model's next-token distribution over the record.
"""

from __future__ import annotations

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.signals import SampleSignals


@ATTACKS.register("entropy")
class EntropyAttack(MembershipAttack):
    """Score = mean over tokens of E_p[log p] (= minus the entropy)."""

    summary = "membership: negative predictive entropy (example plugin)"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return np.array([float(mu.mean()) if mu.size else 0.0 for mu in target.token_mu])
