"""Dense bit packing of small integer codes into bytes (pure, vectorized torch).

Codes are laid out most-significant-bit first: the first code takes the high bits of the first
byte. At 4 bits this is exactly bitsandbytes' nf4/fp4 layout (``q[0::2] << 4 | q[1::2]``), so a
bnb payload and ours are the same bytes. ``n`` codes of ``bits`` bits take ``ceil(n*bits/8)``
bytes; the unused low bits of the last byte are zero.

Widths 1 and 4 OR shifted uint8 columns into each byte; 2 bits (the paper's width) gathers
four codes with one integer multiply; 3, 5, 6, 7 group ``8 / gcd(8, bits)`` codes into one
integer word (24 bits for 3 and 6, 40 / 56 for 5 / 7) and split it into bytes. Python loops
run over positions inside a group (at most 8), never over the data. The paths are tuned for
the ~32K-code steps that ``quantize`` packs, where the number of torch ops costs more than
the bytes they touch.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

from fedlpp.errors import FedlppError

_GATHER_2BIT = (1 << 30) + (1 << 20) + (1 << 10) + 1


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes taken by ``n`` codes of ``bits`` bits: ``ceil(n * bits / 8)``."""
    return (n * bits + 7) // 8


def _layout(bits: int) -> tuple[int, int, torch.dtype]:
    """Codes per group, bytes per group and the integer type holding one group's word."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise FedlppError(f"Invalid bit width: {bits!r} (allowed: 1..8)")
    per_group = 8 // math.gcd(8, bits)
    nbytes = per_group * bits // 8
    # a word of 24 bits fits int32 without touching the sign bit; 40 and 56 need int64
    word = torch.uint8 if nbytes == 1 else torch.int32 if nbytes <= 3 else torch.int64
    return per_group, nbytes, word


def _shifts(bits: int, per_group: int, dtype: torch.dtype) -> Tensor:
    """Left shift of each code inside its group's word (the first code is most significant)."""
    return torch.tensor([bits * (per_group - 1 - i) for i in range(per_group)], dtype=dtype)


def _byte_columns(nbytes: int, dtype: torch.dtype) -> list[int]:
    """Columns of ``word.view(uint8)`` holding the word's low ``nbytes`` bytes, most significant
    first: bytes go back into a word by copies instead of a shift and OR per byte."""
    size = torch.empty(0, dtype=dtype).element_size()
    if sys.byteorder == "little":
        return list(range(nbytes - 1, -1, -1))
    return list(range(size - nbytes, size))


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Pack uint8 ``codes`` (each < 2**bits; higher bits are not masked) into bytes.

    Args:
        codes: uint8 tensor of any shape; read in flattened (row-major) order.
        bits: code width, 1..8.

    Returns:
        A 1-D uint8 tensor of ``ceil(codes.numel() * bits / 8)`` bytes (a fresh tensor, never a
        view of ``codes``).
    """
    per_group, nbytes, word_dtype = _layout(bits)
    if codes.dtype != torch.uint8:
        raise FedlppError(f"pack_bits expects uint8 codes, got {codes.dtype}")
    flat = codes.reshape(-1)
    n = flat.numel()
    if bits == 8:
        return flat.clone()
    pad = -n % per_group
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    groups = flat.view(-1, per_group)
    if bits == 2 and sys.byteorder == "little":
        if flat.storage_offset() % 4:  # an int32 view needs 4-byte alignment
            flat = flat.clone()
        # one multiply gathers a group of 4: the int32 view c0 + c1<<8 + c2<<16 + c3<<24 times
        # 2^30 + 2^20 + 2^10 + 1 holds c0<<6 | c1<<4 | c2<<2 | c3 in bits 24..31, and no other
        # partial product lands in or carries into those bits (the product stays < 2^57)
        product = flat.view(torch.int32).to(torch.int64) * _GATHER_2BIT
        out = product.view(torch.uint8).view(-1, 8)[:, 3]
    elif nbytes == 1:  # 1, 4 bits: OR shifted uint8 columns straight into the byte
        out = groups[:, 0] << (8 - bits)
        for i in range(1, per_group):
            out |= groups[:, i] << (8 - bits * (i + 1))
    else:  # 3, 5, 6, 7 bits: a 24..56-bit word per group, then its bytes
        wide = groups.to(word_dtype)
        wide <<= _shifts(bits, per_group, word_dtype)
        word = wide.sum(dim=1, dtype=word_dtype)  # fields do not overlap: the sum is their OR
        as_bytes = word.view(torch.uint8).view(-1, word.element_size())
        out = as_bytes[:, :nbytes].flip(1) if sys.byteorder == "little" else as_bytes[:, -nbytes:]
    return out.reshape(-1)[: packed_nbytes(n, bits)]


def unpack_bits(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` codes stored in ``packed``.

    Args:
        packed: 1-D uint8 tensor of at least ``ceil(n * bits / 8)`` bytes.
        bits: code width, 1..8.
        n: number of codes to read.

    Returns:
        A 1-D uint8 tensor of ``n`` codes, each < 2**bits.
    """
    per_group, nbytes, word_dtype = _layout(bits)
    if packed.dtype != torch.uint8:
        raise FedlppError(f"unpack_bits expects uint8 bytes, got {packed.dtype}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise FedlppError(f"Invalid number of codes to unpack: {n!r} (allowed: an integer >= 0)")
    flat = packed.reshape(-1)
    need = packed_nbytes(n, bits)
    if flat.numel() < need:
        raise FedlppError(
            f"Packed payload too short: {flat.numel()} bytes for {n} codes of {bits} bits "
            f"(expected {need})"
        )
    if bits == 8:
        return flat[:n].clone()
    groups = -(-n // per_group)
    flat = flat[:need]
    if need < groups * nbytes:  # restore the zero bytes that pack_bits cut off
        flat = torch.nn.functional.pad(flat, (0, groups * nbytes - need))
    rows = flat.view(groups, nbytes)
    if nbytes == 1:
        word = rows[:, 0]
    else:  # put the bytes back into the low bytes of a zeroed word
        size = torch.empty(0, dtype=word_dtype).element_size()
        buf = torch.zeros((groups, size), dtype=torch.uint8)
        for j, col in enumerate(_byte_columns(nbytes, word_dtype)):
            buf[:, col] = rows[:, j]
        word = buf.view(word_dtype).view(-1)
    out = torch.empty((groups, per_group), dtype=torch.uint8)
    mask = (1 << bits) - 1
    for i in range(per_group):
        out[:, i] = (word >> (bits * (per_group - 1 - i))) & mask
    return out.view(-1)[:n]
