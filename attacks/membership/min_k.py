"""Min-K% Prob (Shi et al., "Detecting Pretraining Data from Large Language Models", ICLR 2024):
a seen text has few very unlikely tokens.

Score = mean of the ``n`` lowest token log-probs of the record, ``n = max(1, floor(k * T))`` of
its ``T`` scored tokens, as in the authors' code (plus ``1e-9`` before flooring, so that
``0.29 * 100`` keeps 29). A record with no scored token scores 0.0, as its loss does. For ``cls``
there is one "token", the label, and the score is its log-prob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attacks.base import ATTACKS
from attacks.context import Observation
from attacks.membership.base import MembershipAttack, MembershipConfig
from attacks.signals import SampleSignals
from fedlpp.typed import check


@dataclass
class MinKConfig(MembershipConfig):
    """Options of ``min-k`` and ``min-k++``."""

    k: float = 0.2  # fraction of the lowest-scoring tokens averaged

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.k <= 1, "k", self.k, "a fraction 0 < k <= 1")


def lowest_mean(values: Sequence[np.ndarray], *, k: float) -> np.ndarray:
    """Per record, the mean of its ``max(1, floor(k * T))`` lowest values (0.0 if it has none)."""
    out = np.zeros(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v.size:
            n = max(1, int(k * v.size + 1e-9))
            out[i] = np.partition(v, n - 1)[:n].sum() / n  # = mean, at a third of np.mean's overhead
    return out


@ATTACKS.register("min-k")
class MinKAttack(MembershipAttack):
    """Score = mean of the k% lowest token log-probs under the target."""

    Config = MinKConfig
    summary = "membership: mean of the k% lowest token log-probs (Min-K% Prob, Shi et al. 2024)"

    def score(self, target: SampleSignals, *, obs: Observation, indices: list[int]) -> np.ndarray:
        return lowest_mean(target.token_logprobs, k=self.config.k)
