"""bitsandbytes' own block-wise quantizers: ``bnb-nf4``, ``bnb-fp4`` and ``bnb-int8``.

They run bnb's routines unchanged (a reference point for ``nf``); the payload is bnb's packed
codes of the tensor's own values + float32 absmax, like every grid payload. bnb is called on
the flat, zero-padded whole-block vector both ways, as before payloads dropped their padding:
0.50.2's CPU dequantize_4bit mishandles 2-D rows that are not whole blocks (see
``tests/test_quant_bnb.py``), and its quantize_4bit stores an all-zero partial block's absmax
as 1e-38 where a whole zero block gets 0, so whole blocks keep the scales as they were. The
code bytes that encode only padding are dropped before sending and re-padded (any code) before
decoding. bitsandbytes is imported on first use, so listing quantizers does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from fedlpp.errors import require_package
from fedlpp.quant import QUANTIZERS
from fedlpp.quant.base import (
    PackedTensor,
    Quantizer,
    blockwise_meta,
    check_bits,
    check_block_size,
    dtype_name,
)
from fedlpp.quant.grid import (
    absmax_scales,
    code_interval,
    from_blocks,
    nearest_ranges,
    padded_codes,
    to_blocks,
)
from fedlpp.quant.pack import packed_nbytes, unpack_bits

DEFAULT_BLOCK_SIZE = 64  # bnb's 4-bit default; also used for int8 (bnb's own is 4096) to compare
# the sizes bnb accepts on every backend (quantize_4bit checks these; its CUDA blockwise kernel
# takes 64..4096), so a payload made here decodes anywhere
BLOCKS_4BIT = (32, 64, 128, 256, 512, 1024, 2048, 4096)
BLOCKS_8BIT = (64, 128, 256, 512, 1024, 2048, 4096)


def _functional() -> Any:
    require_package("bitsandbytes", install="pip install bitsandbytes", purpose="bnb quantizers")
    import bitsandbytes.functional as bnbf

    return bnbf


def _config(name: str, width: int, blocks: tuple[int, ...]) -> type:
    @dataclass
    class BnbConfig:
        bits: int | None = None
        block_size: int | None = None

        def __post_init__(self) -> None:
            if self.bits is not None:
                check_bits(self.bits, quantizer=name, allowed=(width,), text=f"{width}, or unset")
            check_block_size(self.block_size, quantizer=name, allowed=blocks)

    BnbConfig.__qualname__ = BnbConfig.__name__ = f"{name.title().replace('-', '')}Config"
    BnbConfig.__doc__ = f"``bits`` unset or {width}; ``block_size`` one of {blocks} (None = 64)."
    return BnbConfig


def trim_codes(codes: Tensor, *, numel: int, bits: int) -> Tensor:
    """bnb's packed codes of a padded vector cut to the ``ceil(numel * bits / 8)`` bytes of the
    first ``numel`` values; a half-used last byte gets its unused low bits zeroed, as
    :func:`~fedlpp.quant.pack.pack_bits` leaves them (bnb puts a padding code there)."""
    flat = codes.reshape(-1)
    need = packed_nbytes(numel, bits)
    spare = need * 8 - numel * bits  # low bits of the last byte that hold a padding code
    if need == flat.numel() and not spare:
        return flat
    flat = flat[:need].clone()  # a copy: the payload must not keep bnb's whole buffer alive
    if spare:
        flat[-1] &= (0xFF << spare) & 0xFF
    return flat


class _Bnb(Quantizer):
    """Shared flow: pad to whole blocks, call bnb on float32, keep the codes of the real
    values and the absmax."""

    width: ClassVar[int]

    def __init__(self, config: Any = None) -> None:
        config = config or self.Config()
        block = DEFAULT_BLOCK_SIZE if config.block_size is None else config.block_size
        super().__init__(config, bits=self.width, block_size=block)

    def _call(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """bnb's (codes as bytes, absmax) for a float32 vector of whole blocks."""
        raise NotImplementedError

    def quantize(self, x: Tensor, *, seed: int | None = None) -> PackedTensor:
        dtype = dtype_name(x.dtype)
        blocks = to_blocks(x, block_size=self.block_size)
        absmax_scales(blocks)  # bnb does not reject NaN / inf; we do, like nf
        codes, scales = self._call(blocks.reshape(-1))
        codes = trim_codes(codes, numel=x.numel(), bits=self.bits)
        return PackedTensor(quantizer=self.name, bits=self.bits, block_size=self.block_size,
                            shape=tuple(x.shape), dtype=dtype, codes=codes,
                            scales=scales.to(torch.float32))

    def wire_meta(self, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
        return blockwise_meta(self, shape, dtype)


class _Bnb4bit(_Bnb):
    quant_type: ClassVar[str]
    width = 4

    def _call(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        packed, state = _functional().quantize_4bit(flat, blocksize=self.block_size,
                                                    quant_type=self.quant_type)
        return packed, state.absmax

    def levels(self) -> Tensor:
        return _functional().get_4bit_type(self.quant_type, device="cpu").to(torch.float32)

    def dequantize(self, packed: PackedTensor) -> Tensor:
        self.check_payload(packed)
        bnbf = _functional()
        n = packed.scales.numel() * self.block_size
        state = bnbf.QuantState(absmax=packed.scales, shape=torch.Size([n]), dtype=torch.float32,
                                blocksize=self.block_size, quant_type=self.quant_type)
        values = bnbf.dequantize_4bit(padded_codes(packed).view(-1, 1), state)
        return from_blocks(values, shape=packed.shape, dtype=packed.dtype)

    def interval(self, packed: PackedTensor) -> tuple[Tensor, Tensor]:
        """Exact on CPU: bnb 0.50's quantize_4bit rounds to nearest (bucketize on midpoints)."""
        self.check_payload(packed)
        codes = unpack_bits(padded_codes(packed), 4, packed.scales.numel() * self.block_size)
        lo, hi = nearest_ranges(self.levels())
        return code_interval(codes.to(torch.int32), lo=lo, hi=hi, packed=packed)


@QUANTIZERS.register("bnb-nf4")
class BnbNF4(_Bnb4bit):
    """bitsandbytes NF4 (``quantize_4bit(quant_type="nf4")``)."""

    Config = _config("bnb-nf4", 4, BLOCKS_4BIT)
    quant_type = "nf4"


@QUANTIZERS.register("bnb-fp4")
class BnbFP4(_Bnb4bit):
    """bitsandbytes FP4 (``quantize_4bit(quant_type="fp4")``); codes are FP4 bit patterns."""

    Config = _config("bnb-fp4", 4, BLOCKS_4BIT)
    quant_type = "fp4"


@QUANTIZERS.register("bnb-int8")
class BnbInt8(_Bnb):
    """bitsandbytes 8-bit block-wise quantization on its signed dynamic map."""

    Config = _config("bnb-int8", 8, BLOCKS_8BIT)
    width = 8

    def _call(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        codes, state = _functional().quantize_blockwise(flat, blocksize=self.block_size)
        return codes, state.absmax

    def levels(self) -> Tensor:
        return _functional().create_dynamic_map(signed=True).to(torch.float32)

    def dequantize(self, packed: PackedTensor) -> Tensor:
        self.check_payload(packed)
        values = _functional().dequantize_blockwise(padded_codes(packed), absmax=packed.scales,
                                                    code=self.levels(), blocksize=self.block_size)
        return from_blocks(values, shape=packed.shape, dtype=packed.dtype)

    def interval(self, packed: PackedTensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(
            "bnb-int8 has no exact interval(): bitsandbytes' CPU kernel is not exactly "
            "nearest-rounding (about 0.1% of codes land 1-3 levels away), so a code does not "
            "pin its value to one rounding cell; use 'nf' or 'uniform' at 8 bits instead")
