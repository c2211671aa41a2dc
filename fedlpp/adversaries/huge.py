"""``huge``: finite but enormous values (default 3e38, near float32's maximum), which overflow a
weighted sum although each value passes a finiteness check."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedlpp.adversaries.base import ADVERSARIES, FractionConfig, OverwriteValues, check


@dataclass
class HugeConfig(FractionConfig):
    """``value`` (finite) written with random signs over ``fraction`` of each tensor."""

    value: float = 3e38
    fraction: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.value) and self.value != 0, behaviour="huge", option="value",
              value=self.value, allowed="a finite non-zero number")


@ADVERSARIES.register("huge")
class Huge(OverwriteValues):
    """Sends an update of huge finite values."""

    Config = HugeConfig
    random_sign = True

    def fill_value(self) -> float:
        return self.config.value
