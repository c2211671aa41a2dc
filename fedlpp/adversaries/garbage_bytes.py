"""``garbage-bytes``: random bytes instead of the encoded update.

With ``keep_header = true`` the header stays valid and the body (same length) is random with a
recomputed checksum: the message decodes, so what the server's value checks do is tested
(random scales and floats hold NaN, inf and huge values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlpp.adversaries.base import ADVERSARIES, Adversary, Targeting, check
from fedlpp.protocol.wire import HEADER, reseal


@dataclass
class GarbageBytesConfig(Targeting):
    """``nbytes``: length of the garbage (0 = as long as the honest message); ``keep_header``."""

    nbytes: int = 0
    keep_header: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.nbytes >= 0, behaviour="garbage-bytes", option="nbytes", value=self.nbytes,
              allowed=">= 0 (0 = the honest message's length)")


@ADVERSARIES.register("garbage-bytes")
class GarbageBytes(Adversary):
    """Sends random bytes."""

    Config = GarbageBytesConfig

    def tamper_message(self, message: bytes, *, rng: np.random.Generator) -> bytes:
        if self.config.keep_header:
            body = rng.integers(0, 256, len(message) - HEADER.size, dtype=np.uint8).tobytes()
            return reseal(message[: HEADER.size] + body)
        size = self.config.nbytes or len(message)
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()
