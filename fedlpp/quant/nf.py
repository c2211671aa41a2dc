"""``nf``: block-wise absmax scaling onto NormalFloat levels, nearest rounding (QLoRA's NF4,
generalised to 1..8 bits). This is the FedLPP paper's broadcast quantizer."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from fedlpp.quant import QUANTIZERS
from fedlpp.quant.base import check_bits, check_block_size
from fedlpp.quant.grid import GridQuantizer

DEFAULT_BITS = 2  # the paper's figure
DEFAULT_BLOCK_SIZE = 64  # QLoRA / bitsandbytes default


@functools.cache
def _nf_values(bits: int) -> tuple[float, ...]:
    if bits == 1:
        # the NF construction gives {0, 1} at one bit (one positive quantile plus zero), which
        # cannot carry a sign; we use {-1, +1}, i.e. sign(x) * absmax, like `uniform` at 1 bit
        return (-1.0, 1.0)
    n = 2**bits
    # QLoRA's offset is the mean of 1 - 1/(2*15) and 1 - 1/(2*16), written 0.9677083: the same
    # formula for 2^k levels, rounded to 7 digits like bnb's constant (so 4 bits match exactly)
    offset = round(1 - (1 / (2 * (n - 1)) + 1 / (2 * n)) / 2, 7)
    # bitsandbytes' create_normal_map, steps kept (float32 linspace, float64 ppf, float32 divide):
    # 2^(k-1) positive quantiles, 2^(k-1) - 1 negative ones and an exact zero. torch's ndtri is
    # the normal ppf (scipy.stats, whose import alone costs half a second, is not needed)
    def ppf(p: Tensor) -> list[float]:
        return torch.special.ndtri(p.double()).tolist()

    pos = ppf(torch.linspace(offset, 0.5, n // 2 + 1)[:-1])
    neg = [-v for v in ppf(torch.linspace(offset, 0.5, n // 2)[:-1])]
    values = torch.tensor(pos + [0.0] + neg, dtype=torch.float32).sort().values
    return tuple((values / values.max()).tolist())


def nf_levels(*, bits: int) -> Tensor:
    """The sorted NormalFloat codebook in [-1, 1] with ``2**bits`` levels (float32).

    At 4 bits it equals bitsandbytes' ``get_4bit_type("nf4")`` exactly. Levels are asymmetric
    (one more positive than negative level) and include an exact 0, so zeros stay zeros.
    """
    check_bits(bits, quantizer="nf", allowed=range(1, 9), text="1..8")
    return torch.tensor(_nf_values(bits), dtype=torch.float32)


@dataclass
class NFConfig:
    """``bits`` 1..8 (None = 2), ``block_size`` >= 1 (None = 64)."""

    bits: int | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_bits(self.bits, quantizer="nf", allowed=range(1, 9), text="1..8")
        check_block_size(self.block_size, quantizer="nf")


@QUANTIZERS.register("nf")
class NFQuantizer(GridQuantizer):
    """NormalFloat quantizer; at 4 bits it reproduces bnb ``quantize_4bit(quant_type="nf4")``."""

    Config = NFConfig

    def __init__(self, config: NFConfig | None = None) -> None:
        config = config or NFConfig()
        bits = DEFAULT_BITS if config.bits is None else config.bits
        block = DEFAULT_BLOCK_SIZE if config.block_size is None else config.block_size
        super().__init__(config, bits=bits, block_size=block, levels=nf_levels(bits=bits))
