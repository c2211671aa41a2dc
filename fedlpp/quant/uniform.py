"""``uniform``: block-wise absmax scaling onto a symmetric integer grid, nearest rounding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedlpp.quant import QUANTIZERS
from fedlpp.quant.base import check_bits, check_block_size
from fedlpp.quant.grid import GridQuantizer

DEFAULT_BITS = 2
DEFAULT_BLOCK_SIZE = 64


def uniform_levels(*, bits: int) -> Tensor:
    """The symmetric integer grid ``{-q, ..., q} / q`` with ``q = 2**(bits-1) - 1`` (float32).

    This is absmax int quantization (int8 uses -127..127): it keeps an exact 0 and is symmetric,
    at the price of one unused code (``2**bits - 1`` levels). One bit has no room for that, so
    it is ``{-1, +1}`` (sign times absmax).
    """
    check_bits(bits, quantizer="uniform", allowed=range(1, 9), text="1..8")
    if bits == 1:
        return torch.tensor([-1.0, 1.0])
    q = 2 ** (bits - 1) - 1
    return (torch.arange(-q, q + 1, dtype=torch.float64) / q).to(torch.float32)


@dataclass
class UniformConfig:
    """``bits`` 1..8 (None = 2), ``block_size`` >= 1 (None = 64)."""

    bits: int | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_bits(self.bits, quantizer="uniform", allowed=range(1, 9), text="1..8")
        check_block_size(self.block_size, quantizer="uniform")


@QUANTIZERS.register("uniform")
class UniformQuantizer(GridQuantizer):
    """Evenly spaced levels: the baseline the NormalFloat grid is compared against."""

    Config = UniformConfig

    def __init__(self, config: UniformConfig | None = None) -> None:
        config = config or UniformConfig()
        bits = DEFAULT_BITS if config.bits is None else config.bits
        block = DEFAULT_BLOCK_SIZE if config.block_size is None else config.block_size
        super().__init__(config, bits=bits, block_size=block, levels=uniform_levels(bits=bits))
