"""Block-wise absmax scaling onto a fixed codebook: pure functions + the shared GridQuantizer.

``nf``, ``uniform`` and ``stochastic`` differ only in their levels and rounding rule; the
scaling, packing, decoding and interval maths live here once. The maths runs on whole blocks
(the last one zero-padded, which leaves its absmax unchanged), but a payload carries only the
codes of the tensor's own values: :func:`padded_codes` restores whole blocks for decoding.

Scaling follows bitsandbytes exactly (``u = x * (1 / absmax)``, absmax clamped at 1e-38 so a
zero block gives zeros, never NaN) so that nearest rounding reproduces bnb's nf4 codes bit for
bit. Nearest rounding is ``torch.bucketize(u, midpoints)`` (a value on a midpoint goes to the
lower level, as in bnb), computed through a lookup table instead: bucketize binary-searches
every element and costs more than all other steps together, while the table needs one
multiply-add, two gathers and one compare per element (see :func:`bucket_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedlpp.errors import FedlppError
from fedlpp.quant.base import PackedTensor, Quantizer, blockwise_meta, dtype_name, torch_dtype
from fedlpp.quant.pack import pack_bits, packed_nbytes, unpack_bits

_EPS = float(torch.finfo(torch.float32).eps)
_CHUNK = 32767  # values quantized per step: below torch's parallel grain size (32768)


def to_blocks(x: Tensor, *, block_size: int) -> Tensor:
    """Flatten ``x`` to float32 ``(n_blocks, block_size)``, zero-padding the last block.

    No copy is made for a contiguous float32 CPU tensor whose size is a multiple of the block.
    """
    flat = x.detach().reshape(-1).to(device="cpu", dtype=torch.float32)
    pad = -flat.numel() % block_size
    if pad:  # zeros do not change the last block's absmax
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.view(-1, block_size)


def absmax_scales(blocks: Tensor) -> Tensor:
    """Per-block ``max |x|`` (float32); a NaN or inf anywhere is a FedlppError."""
    scales = blocks.abs().amax(dim=1)
    if not bool(torch.isfinite(scales).all()):
        raise FedlppError("Cannot quantize a tensor containing NaN or inf values")
    return scales


def inverse_scales(scales: Tensor) -> Tensor:
    """``1 / absmax`` as a column, absmax clamped at 1e-38 as bitsandbytes does."""
    return (1.0 / scales.clamp(min=1e-38)).unsqueeze(1)


def normalize(blocks: Tensor, scales: Tensor) -> Tensor:
    """``u = x * (1 / absmax)`` in [-1, 1], computed as bitsandbytes does."""
    return blocks * inverse_scales(scales)


def padded_codes(packed: PackedTensor) -> Tensor:
    """The packed codes of all ``n_blocks * block_size`` values, for block-shaped decoding.

    The payload's real codes (:meth:`PackedTensor.real_codes`, which also drops the padding
    codes that older payloads sent), then zero bytes up to whole blocks: the padding codes'
    values do not matter, since :func:`from_blocks` drops them.
    """
    codes = packed.real_codes()
    missing = packed_nbytes(packed.scales.numel() * packed.block_size, packed.bits) - codes.numel()
    return torch.nn.functional.pad(codes, (0, missing)) if missing > 0 else codes


def from_blocks(values: Tensor, *, shape: tuple[int, ...], dtype: str) -> Tensor:
    """Drop the padding of ``(n_blocks, block_size)`` values; restore shape and dtype."""
    return values.reshape(-1)[: math.prod(shape)].reshape(shape).to(torch_dtype(dtype))


def code_interval(codes: Tensor, *, lo: Tensor, hi: Tensor,
                  packed: PackedTensor) -> tuple[Tensor, Tensor]:
    """Elementwise float32 bounds of the original values of ``packed``.

    ``codes`` are its unpacked codes of whole blocks (int32, see :func:`padded_codes`);
    ``lo[code]`` / ``hi[code]`` bound the normalized value ``x / absmax`` of each code. The
    bounds are widened by 4 float32 epsilons of the block scale (the rounding of ``1/absmax``,
    of ``x * inv`` and of the product back) and clipped to ``[-absmax, absmax]``, which holds
    exactly.
    """
    s = packed.scales.unsqueeze(1)
    lo_x = (lo.index_select(0, codes).view(-1, packed.block_size) - 4 * _EPS) * s
    hi_x = (hi.index_select(0, codes).view(-1, packed.block_size) + 4 * _EPS) * s
    return (from_blocks(torch.maximum(lo_x, -s), shape=packed.shape, dtype="float32"),
            from_blocks(torch.minimum(hi_x, s), shape=packed.shape, dtype="float32"))


def nearest_ranges(codebook: Tensor) -> tuple[Tensor, Tensor]:
    """Per code, the normalized range ``[lo, hi]`` that nearest rounding maps onto it.

    ``codebook[code]`` need not be sorted (bnb fp4 is not); codes with equal values (fp4's +0
    and -0) get the union of their ranges, since which of them a tie picks is not specified.
    """
    values = codebook.to(torch.float32)
    uniq = torch.unique(values)  # sorted; -0.0 == 0.0
    mids = (uniq[:-1] + uniq[1:]) / 2
    one = torch.ones(1)
    pos = torch.searchsorted(uniq, values)
    return torch.cat([-one, mids])[pos], torch.cat([mids, one])[pos]


@dataclass(frozen=True)
class BucketTable:
    """Lookup form of ``torch.bucketize(u, boundaries, right=right)`` for u near [-1, 1].

    [-1, 1] is cut into ``cells`` equal cells (plus one for u >= 1). ``base[c]`` counts the
    boundaries below cell c widened by one cell on each side; ``bound[c]`` is the single boundary
    inside that widened cell (+inf if none). So for any u that lands in cell c, the answer is
    ``base[c] + (u > bound[c])`` (``>=`` when ``right``): the widening absorbs the rounding of
    the cell index, and the comparison is made on u itself, so the result equals bucketize's.
    """

    cells: int
    base: Tensor
    bound: Tensor
    right: bool


def bucket_table(boundaries: Tensor, *, right: bool = False) -> BucketTable:
    """Build a :class:`BucketTable` for sorted, distinct float32 ``boundaries`` in [-1, 1]."""
    b = boundaries.to(torch.float32)
    gap = float((b[1:] - b[:-1]).min()) if b.numel() > 1 else 2.0
    cells = 256  # smallest power of two with >= 4 cells per gap: widened cells hold one boundary
    while 2.0 / cells * 4 > gap:
        cells *= 2
        if cells > 1 << 20:
            raise FedlppError(f"Codebook levels too close together ({gap:.3g}) for a lookup table")
    width = 2.0 / cells
    lo = torch.arange(cells + 1, dtype=torch.float64) * width - 1.0 - width  # widened cell starts
    b64 = b.to(torch.float64)
    base = torch.searchsorted(b64, lo, right=False)  # boundaries strictly below the widened cell
    inside = torch.searchsorted(b64, lo + 3 * width, right=True) > base
    bound = torch.where(inside, b[base.clamp(max=b.numel() - 1)], torch.tensor(float("inf")))
    small = torch.uint8 if b.numel() < 256 else torch.int16
    return BucketTable(cells=cells, base=base.to(small), bound=bound, right=right)


def bucketize(u: Tensor, table: BucketTable) -> Tensor:
    """Equal to ``torch.bucketize(u, boundaries, right=table.right)`` for every finite u."""
    half = table.cells / 2
    cell = (u * half).add_(half).to(torch.int32).clamp_(0, table.cells).view(-1)
    bound = table.bound.index_select(0, cell).view(u.shape)
    above = u >= bound if table.right else u > bound
    return table.base.index_select(0, cell).view(u.shape).add_(above)


class GridQuantizer(Quantizer):
    """Block-wise absmax scaling + a sorted codebook ``levels`` in [-1, 1], nearest rounding."""

    def __init__(self, config: Any, *, bits: int, block_size: int, levels: Tensor) -> None:
        super().__init__(config, bits=bits, block_size=block_size)
        self._levels = levels.to(torch.float32)
        mids = (self._levels[:-1] + self._levels[1:]) / 2  # float32, as bnb computes them
        self._table = bucket_table(mids)
        # normalized value range of each code under nearest rounding, for interval()
        self._lo, self._hi = nearest_ranges(self._levels)

    def levels(self) -> Tensor:
        return self._levels.clone()

    def wire_meta(self, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
        return blockwise_meta(self, shape, dtype)

    def _round(self, u: Tensor, *, generator: torch.Generator | None) -> Tensor:
        """Codes of normalized values ``u``: nearest level, a tie to the lower one."""
        return bucketize(u, self._table)

    def quantize(self, x: Tensor, *, seed: int | None = None) -> PackedTensor:
        dtype = dtype_name(x.dtype)
        blocks = to_blocks(x, block_size=self.block_size)
        scales = absmax_scales(blocks)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        inv = inverse_scales(scales)
        # Steps of < 32768 values: torch runs such ops inline on the calling thread (its
        # parallel grain size), so a step never waits on a thread barrier. With whole-tensor
        # ops each of the ~25 ops per step is a barrier; when other processes load the cores
        # each one can stall for a scheduler slice (measured: 16M values at 3 bits took 4.5 s
        # next to a busy process, 0.25 s in small steps). Small steps also keep every
        # temporary in cache. A multiple of 8 rows makes every step's packed codes whole bytes,
        # so the steps concatenate densely; the last step drops the padding values' codes.
        rows = max(8, _CHUNK // self.block_size // 8 * 8)
        packed = [torch.empty(0, dtype=torch.uint8)]  # an empty tensor has no steps
        for start in range(0, blocks.shape[0], rows):
            u = blocks[start:start + rows] * inv[start:start + rows]
            codes = self._round(u, generator=generator).to(torch.uint8).reshape(-1)
            if start + rows >= blocks.shape[0]:
                codes = codes[: x.numel() - start * self.block_size]
            packed.append(pack_bits(codes, self.bits))
        codes = packed[-1] if len(packed) <= 2 else torch.cat(packed)
        return PackedTensor(quantizer=self.name, bits=self.bits, block_size=self.block_size,
                            shape=tuple(x.shape), dtype=dtype, codes=codes, scales=scales,
                            extra=self.extra())

    def _codes(self, packed: PackedTensor) -> Tensor:
        self.check_payload(packed)
        n = packed.scales.numel() * self.block_size
        return unpack_bits(padded_codes(packed), self.bits, n).to(torch.int32)

    def dequantize(self, packed: PackedTensor) -> Tensor:
        values = self._levels.index_select(0, self._codes(packed)).view(-1, self.block_size)
        values *= packed.scales.unsqueeze(1)
        return from_blocks(values, shape=packed.shape, dtype=packed.dtype)

    def interval(self, packed: PackedTensor) -> tuple[Tensor, Tensor]:
        return code_interval(self._codes(packed), lo=self._lo, hi=self._hi, packed=packed)
