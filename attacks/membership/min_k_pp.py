"""Min-K%++ (Zhang et al., "Min-K%++: Improved Baseline for Detecting Pre-Training Data from
Large Language Models", 2024): a seen token is a local maximum of the likelihood, so its log-prob
stands out from the model's own next-token distribution at that position.

Per token ``z_t = (log p(x_t | x_<t) - mu_t) / max(sigma_t, 1e-6)``, with ``mu_t`` / ``sigma_t``
the mean and std of ``log p(z)`` for ``z ~ p(. | x_<t)`` (from the shared signals); the floor on
sigma keeps a near-certain position (sigma ~ 0, where float32 noise in the numerator is ~1e-7)
from exploding. Score = mean of the ``max(1, floor(k * T))`` lowest ``z_t`` (as ``min-k``). For
``cls`` the one "token" is the label and ``mu`` / ``sigma`` run over the classes.
"""

from __future__ import annotations

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack
from attacks.membership.min_k import MinKConfig, lowest_mean
from attacks.signals import SampleSignals

SIGMA_FLOOR = 1e-6


def token_z(target: SampleSignals) -> list[np.ndarray]:
    """Per record, the standardised log-prob of each scored token."""
    return [(lp - mu) / np.maximum(sd, SIGMA_FLOOR) for lp, mu, sd in
            zip(target.token_logprobs, target.token_mu, target.token_sigma, strict=True)]


@ATTACKS.register("min-k++")
class MinKPlusPlusAttack(MembershipAttack):
    """Score = mean of the k% lowest standardised token log-probs under the target."""

    Config = MinKConfig
    summary = "membership: mean of the k% lowest standardised token log-probs (Min-K%++, Zhang et al. 2024)"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return lowest_mean(token_z(target), k=self.config.k)
