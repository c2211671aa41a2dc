"""Every random draw of a run is seeded from the run seed through these helpers.

A draw's seed is derived from the run seed and the integers that say which draw it is (round,
client, tensor index, ...), so it does not depend on the order or the process draws run in.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, round, client, ...), stable across processes."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def numpy_rng(*parts: int) -> np.random.Generator:
    """A numpy generator seeded by ``parts`` (e.g. ``numpy_rng(seed, round)``)."""
    return np.random.default_rng(list(parts) if len(parts) > 1 else parts[0])


def torch_generator(seed: int) -> torch.Generator:
    """A CPU torch generator seeded with ``seed`` (batch order, stochastic rounding)."""
    return torch.Generator().manual_seed(seed)


def seed_torch(seed: int) -> None:
    """Seed torch's global generator: what draws without a generator (LoRA init, dropout) use."""
    torch.manual_seed(seed)
