"""Bit packing and the lookup-table bucketize: pure maths, exact answers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlpp.errors import FedlppError
from fedlpp.quant.grid import bucket_table, bucketize
from fedlpp.quant.nf import nf_levels
from fedlpp.quant.pack import pack_bits, packed_nbytes, unpack_bits
from fedlpp.quant.uniform import uniform_levels


@settings(max_examples=300, deadline=None)
@given(data=st.data(), bits=st.integers(1, 8), n=st.integers(0, 70))
def test_pack_roundtrip_every_width(data, bits, n):
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=n, max_size=n))
    codes = torch.tensor(values, dtype=torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.dim() == 1
    assert packed.numel() == math.ceil(n * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, n), codes)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000, 4099])
def test_pack_roundtrip_larger(bits, n):
    codes = torch.randint(0, 2**bits, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    assert torch.equal(unpack_bits(pack_bits(codes, bits), bits, n), codes)
    assert packed_nbytes(n, bits) == pack_bits(codes, bits).numel()


def test_pack_known_answers():
    u8 = lambda xs: torch.tensor(xs, dtype=torch.uint8)  # noqa: E731
    assert pack_bits(u8([1, 0, 1, 1, 0, 0, 0, 1, 1]), 1).tolist() == [0b10110001, 0b10000000]
    assert pack_bits(u8([1, 2, 3]), 4).tolist() == [0x12, 0x30]  # bnb nf4 layout: high nibble first
    assert pack_bits(u8([3, 0, 2, 1, 1]), 2).tolist() == [0b11001001, 0b01000000]
    # 3 bits: 111 000 101 010 | 001 -> 11100010 10100010 0.......
    assert pack_bits(u8([7, 0, 5, 2, 1]), 3).tolist() == [0b11100010, 0b10100010]
    assert pack_bits(u8([5, 255]), 8).tolist() == [5, 255]


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_strided_and_unaligned_views(bits):
    codes = torch.randint(0, 2**bits, (3, 41), generator=torch.Generator().manual_seed(bits),
                          dtype=torch.uint8)
    for view in (codes[:, 1:], codes.t(), codes.view(-1)[1:], codes.view(-1)[3:]):
        assert torch.equal(pack_bits(view, bits), pack_bits(view.contiguous().clone(), bits))


def test_pack_does_not_alias_input():
    codes = torch.tensor([1, 2, 3], dtype=torch.uint8)
    packed = pack_bits(codes, 8)
    codes[0] = 9
    assert packed[0] == 1


def test_pack_errors():
    with pytest.raises(FedlppError, match="allowed: 1..8"):
        pack_bits(torch.zeros(3, dtype=torch.uint8), 9)
    with pytest.raises(FedlppError, match="allowed: 1..8"):
        unpack_bits(torch.zeros(3, dtype=torch.uint8), 0, 3)
    with pytest.raises(FedlppError, match="uint8"):
        pack_bits(torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(FedlppError, match="too short"):
        unpack_bits(torch.zeros(1, dtype=torch.uint8), 3, 8)


def _probe_points(boundaries: torch.Tensor) -> torch.Tensor:
    """Random values plus every boundary, its float32 neighbours, and the ends."""
    rand = torch.rand(20000, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    up, down = boundaries + 1, boundaries - 1
    ends = torch.tensor([-1.0, 1.0, 0.0, -0.0, -1.0000001, 1.0000001, -50.0, 50.0])
    return torch.cat([rand, boundaries, torch.nextafter(boundaries, up),
                      torch.nextafter(boundaries, down), ends])


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("levels_fn", [nf_levels, uniform_levels])
def test_lookup_bucketize_equals_torch_bucketize(bits, levels_fn):
    levels = levels_fn(bits=bits)
    mids = (levels[:-1] + levels[1:]) / 2
    for bounds, right in [(mids, False), (levels, True)]:
        u = _probe_points(bounds).view(1, -1)  # any shape
        got = bucketize(u, bucket_table(bounds, right=right))
        assert torch.equal(got.long(), torch.bucketize(u, bounds, right=right))
