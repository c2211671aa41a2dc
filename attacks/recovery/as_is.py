"""The last proxy as received: the paper's own measure of model privacy."""

from __future__ import annotations

from dataclasses import dataclass

from attacks.base import ATTACKS, AttackResult
from attacks.context import Observation
from attacks.recovery.base import RecoveryAttack, RecoveryConfig


@dataclass
class AsIsConfig(RecoveryConfig):
    """No options beyond the attacking client."""


@ATTACKS.register("as-is")
class AsIs(RecoveryAttack):
    """Use the last broadcast received, dequantized, as the recovered model."""

    Config = AsIsConfig
    summary = "recovery: the last broadcast as received (the paper's measure)"

    def run(self, obs: Observation) -> AttackResult:
        rnd = obs.payload_rounds()[-1]
        return AttackResult(recovered=obs.proxy(rnd), round=rnd)
