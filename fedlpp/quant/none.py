"""``none``: full precision. The payload is the raw float32 (or float16) bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedlpp.quant import QUANTIZERS
from fedlpp.quant.base import (
    PackedTensor,
    Quantizer,
    check_bits,
    check_block_size,
    dtype_name,
    torch_dtype,
)

_WIRE = {32: torch.float32, 16: torch.float16}
_F16_NEXT = 65536.0  # where float16 would put the value after its max 65504, were there one


@dataclass
class NoneConfig:
    """``bits`` 32 (None, float32) or 16 (float16). ``block_size`` is accepted and ignored (no
    blocks) so that a sweep over block sizes can include the full-precision baseline."""

    bits: int | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_bits(self.bits, quantizer="none", allowed=(16, 32), text="16, 32")
        check_block_size(self.block_size, quantizer="none")


@QUANTIZERS.register("none")
class FullPrecision(Quantizer):
    """No quantization: exact at 32 bits for float32 / float16 / bfloat16 inputs."""

    Config = NoneConfig

    def __init__(self, config: NoneConfig | None = None) -> None:
        config = config or NoneConfig()
        super().__init__(config, bits=32 if config.bits is None else config.bits, block_size=1)

    def quantize(self, x: Tensor, *, seed: int | None = None) -> PackedTensor:
        dtype = dtype_name(x.dtype)
        # copy=True: the payload must not alias the sender's (mutable) master tensor
        raw = x.detach().reshape(-1).to(device="cpu", dtype=_WIRE[self.bits], copy=True)
        return PackedTensor(quantizer=self.name, bits=self.bits, block_size=1,
                            shape=tuple(x.shape), dtype=dtype, codes=raw.view(torch.uint8))

    def wire_meta(self, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
        shape = tuple(int(s) for s in shape)
        return {"quantizer": self.name, "bits": self.bits, "block_size": 1, "shape": list(shape),
                "dtype": dtype_name(torch_dtype(dtype)),
                "codes_nbytes": math.prod(shape) * self.bits // 8, "n_scales": None, "extra": {}}

    def _values(self, packed: PackedTensor) -> Tensor:
        self.check_payload(packed)
        return packed.real_codes().view(_WIRE[self.bits]).reshape(packed.shape)

    def dequantize(self, packed: PackedTensor) -> Tensor:
        return self._values(packed).to(torch_dtype(packed.dtype), copy=True)

    def interval(self, packed: PackedTensor) -> tuple[Tensor, Tensor]:
        """lo == hi == value, except float32 / bfloat16 sent as float16: then the float16
        rounding range (half-way to each neighbour, so ties to even are covered)."""
        wire = self._values(packed)
        value = wire.to(torch.float32, copy=True)
        if self.bits == 32 or packed.dtype == "float16":
            return value, value.clone()
        inf = torch.full_like(wire, float("inf"))
        clip = value.clamp(-_F16_NEXT, _F16_NEXT)  # treat +-inf as the next value after 65504
        down = torch.nextafter(wire, -inf).to(torch.float32).clamp(-_F16_NEXT, _F16_NEXT)
        up = torch.nextafter(wire, inf).to(torch.float32).clamp(-_F16_NEXT, _F16_NEXT)
        lo = torch.where(value == -float("inf"), value, (clip + down) / 2)
        hi = torch.where(value == float("inf"), value, (clip + up) / 2)
        return lo, hi
