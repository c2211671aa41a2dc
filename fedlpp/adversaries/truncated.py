"""``truncated``: only the first part of the encoded update arrives (a dropped connection)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check


@dataclass
class TruncatedConfig(Targeting):
    """``keep``: share of the message's bytes that arrive (0 <= keep < 1)."""

    keep: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.keep < 1, behaviour="truncated", option="keep", value=self.keep,
              allowed="0 <= keep < 1")


@ADVERSARIES.register("truncated")
class Truncated(Adversary):
    """Sends a cut-off message."""

    Config = TruncatedConfig

    def tamper_message(self, message: bytes, *, rng: np.random.Generator) -> bytes:
        return message[: int(len(message) * self.config.keep)]
