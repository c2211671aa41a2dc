"""Quantizers: every registered one round-trips; known answers; wire size; intervals; errors."""

import json
import math

import pytest
import torch

from fedlpp.errors import FedlppError
from fedlpp.quant import (
    QUANTIZERS,
    PackedTensor,
    build_quantizer,
    grid,
    quantizer_for,
)
from fedlpp.quant.nf import nf_levels
from fedlpp.quant.uniform import uniform_levels

NAMES = QUANTIZERS.names()
GRID = ["nf", "uniform", "stochastic"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(0,), (1,), (5,), (64,), (3, 70), (2, 3, 33)]


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_builtins_registered():
    assert set(NAMES) >= {"nf", "uniform", "stochastic", "bnb-nf4", "bnb-fp4", "bnb-int8", "none"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_roundtrip_shape_and_dtype(name, dtype, shape):
    q = build_quantizer(name)
    x = randn(*shape, dtype=dtype)
    packed = q.quantize(x, seed=1)
    y = q.dequantize(packed)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert bool(torch.isfinite(y).all())
    assert packed.codes.dtype == torch.uint8 and packed.nbytes == len(packed.to_bytes())
    assert isinstance(q.bits, int) and isinstance(q.block_size, int)
    if x.numel() > 1:  # decoded values point the same way (stochastic 2 bits is noisy)
        assert torch.cosine_similarity(y.float().view(-1), x.float().view(-1), dim=0) > 0.5


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_and_grad_input(name):
    q = build_quantizer(name)
    x = randn(70, 33).t().requires_grad_(True)
    y = q.dequantize(q.quantize(x, seed=0))
    assert y.shape == x.shape and not y.requires_grad
    assert torch.equal(y, q.dequantize(q.quantize(x.detach().contiguous(), seed=0)))


@pytest.mark.parametrize("name", NAMES)
def test_zero_blocks_give_zeros_not_nan(name):
    q = build_quantizer(name)
    x = torch.zeros(3, 64)
    x[1, 5] = 0.7  # one non-zero block between zero blocks
    y = q.dequantize(q.quantize(x, seed=0))
    assert bool(torch.isfinite(y).all())
    assert torch.equal(y[0], torch.zeros(64)) and torch.equal(y[2], torch.zeros(64))


@pytest.mark.parametrize("name", NAMES)
def test_bytes_and_meta_roundtrip(name):
    q = build_quantizer(name)
    packed = q.quantize(randn(3, 71), seed=5)
    meta = json.loads(json.dumps(packed.meta()))  # JSON-able, as in a trace
    again = PackedTensor.from_bytes(packed.to_bytes(), meta=meta)
    assert again == packed
    assert torch.equal(quantizer_for(again).dequantize(again), q.dequantize(packed))
    with pytest.raises(FedlppError, match="does not match its metadata"):
        PackedTensor.from_bytes(packed.to_bytes()[:-1], meta=meta)
    with pytest.raises(FedlppError, match="lacks bits"):
        PackedTensor.from_bytes(packed.to_bytes(), meta={k: v for k, v in meta.items() if k != "bits"})


@pytest.mark.parametrize("name", ["nf", "uniform", "stochastic", "bnb-nf4", "bnb-fp4", "bnb-int8"])
@pytest.mark.parametrize("numel", [1, 63, 64, 65, 1000, 4096])
def test_wire_size_formula(name, numel):
    # codes of the real values only (a partial last block sends no padding codes), one scale
    # per block
    q = build_quantizer(name)
    packed = q.quantize(randn(numel), seed=0)
    n_blocks = math.ceil(numel / q.block_size)
    assert len(packed.to_bytes()) == math.ceil(numel * q.bits / 8) + 4 * n_blocks
    assert packed.codes.numel() == packed.codes_needed and packed.scales.numel() == n_blocks


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("block_size", [1, 7, 64, 100])
def test_grid_wire_size_every_width(bits, block_size):
    for name in GRID:
        q = build_quantizer(name, bits=bits, block_size=block_size)
        packed = q.quantize(randn(333), seed=0)
        n_blocks = math.ceil(333 / block_size)
        assert packed.nbytes == math.ceil(333 * bits / 8) + 4 * n_blocks


@pytest.mark.parametrize("name", GRID)
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_quantize_in_steps_equals_one_step(name, bits, monkeypatch):
    x = randn(64 * 50 + 3)
    q = build_quantizer(name, bits=bits)
    whole = q.quantize(x, seed=0)
    monkeypatch.setattr(grid, "_CHUNK", 64 * 8)  # 8 blocks per step: 7 steps, the last partial
    steps = q.quantize(x, seed=0)
    assert steps.nbytes == whole.nbytes and steps == q.quantize(x, seed=0)
    if q.deterministic:
        assert steps == whole
    lo, hi = q.interval(steps)
    assert bool((lo <= x).all() and (x <= hi).all())


def test_none_wire_size_and_exactness():
    x = randn(5, 7)
    q32, q16 = build_quantizer("none"), build_quantizer("none", bits=16)
    assert q32.bits == 32 and q32.quantize(x).nbytes == 4 * 35 and q16.quantize(x).nbytes == 2 * 35
    assert torch.equal(q32.fake_quantize(x), x)
    assert torch.equal(q16.fake_quantize(x), x.half().float())
    for dtype in DTYPES:  # exact at 32 bits for every input dtype
        assert torch.equal(q32.fake_quantize(x.to(dtype)), x.to(dtype))


def test_payload_does_not_alias_sender_or_receiver():
    for name in NAMES:
        q = build_quantizer(name)
        x = randn(128)
        packed = q.quantize(x, seed=0)
        first = q.dequantize(packed)
        expected = first.clone()
        x.mul_(3)  # the server updates its master in place
        first.add_(1)  # a client trains on what it received
        assert torch.equal(q.dequantize(packed), expected), name


def test_nf_codebook():
    for bits in range(1, 9):
        lv = nf_levels(bits=bits)
        assert lv.numel() == 2**bits and lv.dtype == torch.float32
        assert bool((lv[1:] > lv[:-1]).all()) and lv[0] == -1 and lv[-1] == 1
        assert bits == 1 or bool((lv == 0).any())
    assert nf_levels(bits=1).tolist() == [-1.0, 1.0]
    # 2 bits: 2 positive quantiles, 1 negative, zero (asymmetric like NF4)
    assert nf_levels(bits=2)[:2].tolist() == [-1.0, 0.0]


def test_uniform_codebook():
    assert uniform_levels(bits=1).tolist() == [-1.0, 1.0]
    assert uniform_levels(bits=2).tolist() == [-1.0, 0.0, 1.0]
    assert torch.allclose(uniform_levels(bits=8) * 127, torch.arange(-127.0, 128.0))
    x = torch.tensor([[1.0, -0.55, 0.26, 0.1, -0.0]])  # 3 bits: multiples of 1/3
    expected = torch.tensor([[1.0, -2 / 3, 1 / 3, 0.0, 0.0]])
    assert torch.allclose(build_quantizer("uniform", bits=3).fake_quantize(x), expected)


@pytest.mark.parametrize("name", GRID)
def test_error_decreases_with_bits(name):
    x = randn(64 * 256)
    errors = [torch.mean((build_quantizer(name, bits=b).fake_quantize(x, seed=0) - x) ** 2).item()
              for b in range(1, 9)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_interval_contains_original(name, dtype):
    bits_list = range(1, 9) if name in GRID else [None]
    x = torch.cat([randn(1000, seed=3), torch.tensor([0.0, 1e-30, -1e-30, 3e3, -7.0])]).to(dtype)
    x = x * torch.linspace(0.01, 10, x.numel()).to(dtype)
    for bits in bits_list:
        q = build_quantizer(name, **({} if bits is None else {"bits": bits}))
        packed = q.quantize(x, seed=0)
        if name == "bnb-int8":
            with pytest.raises(NotImplementedError, match="nearest"):
                q.interval(packed)
            return
        lo, hi = q.interval(packed)
        y = q.dequantize(packed).float()
        assert lo.shape == hi.shape == x.shape and lo.dtype == torch.float32
        assert bool((lo <= x.float()).all() and (x.float() <= hi).all()), (name, bits)
        if dtype == torch.float32:  # the decoded value is consistent with its own payload
            assert bool((lo <= y).all() and (y <= hi).all()), (name, bits)
        if name == "none" and dtype == torch.float32:
            assert torch.equal(lo, x) and torch.equal(hi, x)


def test_interval_float16_wire_covers_rounding():
    x = torch.tensor([1.0, 1.0 + 2**-11, 65519.0, 65520.0, 1e6, -1e6, 3e-8, -70000.0])
    q = build_quantizer("none", bits=16)
    lo, hi = q.interval(q.quantize(x))
    assert bool((lo <= x).all() and (x <= hi).all())


@pytest.mark.parametrize("name", NAMES)
def test_levels(name):
    q = build_quantizer(name)
    lv = q.levels()
    if name == "none":
        assert lv is None
        return
    assert lv.dtype == torch.float32 and lv.abs().max() == 1
    packed = q.quantize(randn(64), seed=0)  # levels()[code] * scale is the decoded value
    y = q.dequantize(packed)
    assert bool(torch.isin(y, lv * packed.scales[0]).all())


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("nf", {"bits": 9}, "Invalid quant.bits: 9 for quantizer 'nf' (allowed: 1..8)"),
    ("nf", {"bits": 0}, "Invalid quant.bits: 0 for quantizer 'nf' (allowed: 1..8)"),
    ("uniform", {"bits": True}, "Invalid quant.bits: True"),
    ("stochastic", {"bits": "4"}, "Invalid quant.bits: '4'"),
    ("nf", {"block_size": 0}, "Invalid quant.block_size: 0 for quantizer 'nf' (allowed: an integer >= 1)"),
    ("uniform", {"block_size": -3}, "Invalid quant.block_size: -3"),
    ("none", {"bits": 8}, "Invalid quant.bits: 8 for quantizer 'none' (allowed: 16, 32)"),
    ("bnb-nf4", {"bits": 2}, "Invalid quant.bits: 2 for quantizer 'bnb-nf4' (allowed: 4, or unset)"),
    ("bnb-int8", {"bits": 4}, "(allowed: 8, or unset)"),
    ("bnb-fp4", {"block_size": 100}, "Invalid quant.block_size: 100 for quantizer 'bnb-fp4' (allowed: 32, 64,"),
    ("bnb-int8", {"block_size": 32}, "(allowed: 64, 128, 256"),
    ("stochastic", {"grid": "fp4"}, "Invalid quant.grid: 'fp4' for quantizer 'stochastic' (allowed: 'nf', 'uniform')"),
    ("nf", {"grid": "nf"}, "Unknown option 'grid' for quantizer 'nf'"),
    ("nff", {}, "Unknown quantizer 'nff'. Did you mean 'nf'?"),
])
def test_bad_config_errors(name, kwargs, message):
    with pytest.raises(FedlppError) as info:
        build_quantizer(name, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_input_errors():
    q = build_quantizer("nf")
    with pytest.raises(FedlppError, match="NaN or inf"):
        q.quantize(torch.tensor([1.0, float("nan")]))
    with pytest.raises(FedlppError, match="dtype int64"):
        q.quantize(torch.arange(4))
    with pytest.raises(FedlppError, match="cannot be decoded"):
        build_quantizer("nf", bits=3).dequantize(q.quantize(randn(64)))
    with pytest.raises(FedlppError, match="cannot be decoded"):
        build_quantizer("stochastic", grid="uniform").dequantize(
            build_quantizer("stochastic").quantize(randn(64), seed=0))
