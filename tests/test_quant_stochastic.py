"""Stochastic rounding: unbiased given the block scale, reproducible from its seed."""

import pytest
import torch

from fedlpp.quant import QUANTIZERS, build_quantizer


def test_deterministic_flags():
    for name in QUANTIZERS.names():
        assert build_quantizer(name).deterministic is (name != "stochastic")


@pytest.mark.parametrize("grid", ["nf", "uniform"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_unbiased(grid, bits):
    # one block of 64 values repeated as many blocks: every copy has the same absmax
    gen = torch.Generator().manual_seed(bits)
    row = torch.randn(64, generator=gen)
    reps = 20000
    x = row.repeat(reps, 1)
    q = build_quantizer("stochastic", bits=bits, grid=grid)
    mean = q.fake_quantize(x, seed=123).mean(dim=0)
    levels = q.levels()
    scale = row.abs().max()
    # each decoded value is within one level gap of x: std <= gap * scale / 2
    stderr = float((levels[1:] - levels[:-1]).max() * scale / 2 / reps**0.5)
    assert float((mean - row).abs().max()) < 5 * stderr
    # nearest rounding onto the same grid is visibly biased at this tolerance
    nearest = build_quantizer(grid, bits=bits).fake_quantize(row)
    assert float((nearest - row).abs().max()) > 10 * stderr


def test_seed_reproducible_and_varies():
    q = build_quantizer("stochastic", bits=3)
    x = torch.randn(10, 100, generator=torch.Generator().manual_seed(0))
    assert q.quantize(x, seed=7) == q.quantize(x, seed=7)
    assert q.quantize(x, seed=7) != q.quantize(x, seed=8)
    torch.manual_seed(1)  # seed None draws from torch's global RNG
    a = q.quantize(x)
    torch.manual_seed(1)
    assert q.quantize(x) == a


def test_decodes_onto_grid_and_interval_is_neighbours():
    q = build_quantizer("stochastic", bits=2, grid="uniform")  # levels -1, 0, 1
    x = torch.tensor([[1.0, 0.5, -0.25, 0.0]])
    y = q.fake_quantize(x, seed=0)
    assert set(y.view(-1).tolist()) <= {-1.0, 0.0, 1.0} and y[0, 0] == 1 and y[0, 3] == 0
    lo, hi = q.interval(q.quantize(x, seed=0))
    assert bool((lo <= x).all() and (x <= hi).all())
