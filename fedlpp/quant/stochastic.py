"""``stochastic``: unbiased stochastic rounding onto the ``nf`` or ``uniform`` grid.

Between the two levels around ``u = x / absmax`` it rounds up with probability proportional
to the distance from the lower level, so ``E[dequantize(quantize(x))] == x`` given the block
scale. The server passes a fresh ``seed`` each round; the same seed gives the same payload.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedlpp.errors import FedlppError
from fedlpp.quant import QUANTIZERS
from fedlpp.quant.base import check_bits, check_block_size
from fedlpp.quant.grid import GridQuantizer, bucket_table, bucketize
from fedlpp.quant.nf import nf_levels
from fedlpp.quant.uniform import uniform_levels

DEFAULT_BITS = 2
DEFAULT_BLOCK_SIZE = 64
_GRIDS = {"nf": nf_levels, "uniform": uniform_levels}


@dataclass
class StochasticConfig:
    """``bits`` 1..8 (None = 2), ``block_size`` >= 1 (None = 64), ``grid`` "nf" or "uniform"."""

    bits: int | None = None
    block_size: int | None = None
    grid: str = "nf"

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_bits(self.bits, quantizer="stochastic", allowed=range(1, 9), text="1..8")
        check_block_size(self.block_size, quantizer="stochastic")
        if self.grid not in _GRIDS:
            raise FedlppError(f"Invalid quant.grid: {self.grid!r} for quantizer 'stochastic' "
                              f"(allowed: {', '.join(map(repr, _GRIDS))})")


@QUANTIZERS.register("stochastic")
class StochasticQuantizer(GridQuantizer):
    """Stochastic rounding; decodes like the deterministic grid quantizer it is built on."""

    Config = StochasticConfig
    deterministic = False

    def __init__(self, config: StochasticConfig | None = None) -> None:
        config = config or StochasticConfig()
        bits = DEFAULT_BITS if config.bits is None else config.bits
        block = DEFAULT_BLOCK_SIZE if config.block_size is None else config.block_size
        levels = _GRIDS[config.grid](bits=bits)
        super().__init__(config, bits=bits, block_size=block, levels=levels)
        self._floor = bucket_table(self._levels, right=True)  # counts levels <= u
        self._gaps = self._levels[1:] - self._levels[:-1]
        # a code can come from anywhere between its two neighbouring levels
        last = self._levels.numel() - 1
        idx = torch.arange(last + 1)
        self._lo = self._levels[(idx - 1).clamp(min=0)]
        self._hi = self._levels[(idx + 1).clamp(max=last)]

    def extra(self) -> dict[str, str]:
        return {"grid": self.config.grid}

    def _round(self, u: Tensor, *, generator: torch.Generator | None) -> Tensor:
        """Lower neighbour, plus one with probability (u - lower) / (upper - lower)."""
        below = bucketize(u, self._floor).to(torch.int32).sub_(1)
        below.clamp_(0, self._levels.numel() - 2)  # u == 1 rounds up from the last gap
        flat = below.view(-1)
        frac = (u - self._levels.index_select(0, flat).view(u.shape))
        frac /= self._gaps.index_select(0, flat).view(u.shape)
        draw = torch.rand(u.shape, generator=generator)  # None (no seed): torch's global RNG
        return below.add_(draw < frac)
