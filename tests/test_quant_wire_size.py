"""Payloads carry only the codes of the real values: sizes, ``wire_meta``, old padded payloads."""

import json
import math
import time

import pytest
import torch

from fedlpp.errors import FedlppError
from fedlpp.quant import QUANTIZERS, PackedTensor, Quantizer, build_quantizer, grid, quantizer_for
from fedlpp.quant.pack import unpack_bits

GRID = ["nf", "uniform", "stochastic"]
BLOCKWISE = [*GRID, "bnb-nf4", "bnb-fp4", "bnb-int8"]
# valid configurations per built-in quantizer; a third-party one is built with its defaults
CONFIGS = {
    **{name: [{"bits": b} for b in (1, 2, 3, 4, 5, 8)] + [{"bits": 3, "block_size": 7}]
       for name in GRID},
    "none": [{"bits": 32}, {"bits": 16}],
    **{name: [{}, {"block_size": 4096}] for name in ("bnb-nf4", "bnb-fp4")},
    "bnb-int8": [{}, {"block_size": 128}],
}
WIRE_SHAPES = [(0,), (1,), (5,), (63,), (64,), (65,), (3, 70), (2, 3, 33), (8, 576), (4097,)]
DTYPES = ["float32", "float16", "bfloat16"]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def configured(name):
    return [(name, kwargs) for kwargs in CONFIGS.get(name, [{}])]


@pytest.mark.parametrize(("name", "kwargs"), [c for n in QUANTIZERS.names() for c in configured(n)])
def test_wire_meta_equals_quantize_meta(name, kwargs):
    q = build_quantizer(name, **kwargs)
    for shape in WIRE_SHAPES:
        for dtype in DTYPES:
            x = randn(*shape, seed=len(shape)).to(getattr(torch, dtype))
            meta = q.quantize(x, seed=0).meta()
            assert q.wire_meta(shape, dtype) == meta, (shape, dtype)
            assert Quantizer.wire_meta(q, shape, dtype) == meta, (shape, dtype)  # the default
            json.dumps(meta)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_wire_meta_is_arithmetic_for_builtins(name):
    if name not in CONFIGS:
        pytest.skip("third-party quantizer: the base default quantizes")
    q = build_quantizer(name)
    start = time.perf_counter()
    meta = q.wire_meta((10_000, 10_000), "float32")  # 100M values: no tensor is made
    assert time.perf_counter() - start < 0.5  # quantizing zeros would take seconds
    if meta["n_scales"] is None:
        assert meta["codes_nbytes"] == 10**8 * q.bits // 8
    else:
        assert meta["codes_nbytes"] == math.ceil(10**8 * q.bits / 8)
        assert meta["n_scales"] == math.ceil(10**8 / q.block_size)


def test_wire_meta_rejects_bad_dtype():
    with pytest.raises(FedlppError, match="Unknown payload dtype 'int8'"):
        build_quantizer("nf").wire_meta((4,), "int8")


def test_large_block_costs_fewer_bytes_than_small():
    # the regression: a 2-bit broadcast of small LoRA tensors at block 65536 used to pay for
    # 65536 codes per tensor; now it pays for its values plus one scale
    shapes = [(8, 576), (576, 8), (8,)]
    numel = sum(math.prod(s) for s in shapes)

    def total(block_size):
        q = build_quantizer("nf", bits=2, block_size=block_size)
        return sum(q.quantize(randn(*s, seed=i)).nbytes for i, s in enumerate(shapes))

    assert total(65536) < total(64)
    assert total(65536) == sum(math.ceil(math.prod(s) * 2 / 8) for s in shapes) + 4 * len(shapes)
    assert total(64) == math.ceil(numel * 2 / 8) + 4 * (9216 // 64 + 1)


def padded_reference(q, x, seed):
    """The old layout: quantize ``x`` zero-padded to whole blocks (zeros leave every block's
    absmax unchanged), i.e. the payload as it was before padding codes were dropped."""
    flat = x.reshape(-1)
    return q.quantize(torch.nn.functional.pad(flat, (0, -flat.numel() % q.block_size)), seed=seed)


@pytest.mark.parametrize("name", BLOCKWISE)
@pytest.mark.parametrize("numel", [1, 3, 63, 65, 1001, 64 * 600 + 13])
def test_values_and_intervals_equal_padded_reference(name, numel):
    q = build_quantizer(name)
    x = randn(numel, seed=numel) * 3
    packed, ref = q.quantize(x, seed=7), padded_reference(q, x, seed=7)
    assert packed.codes.numel() == math.ceil(numel * q.bits / 8)
    assert torch.equal(packed.scales, ref.scales)
    assert torch.equal(unpack_bits(packed.codes, q.bits, numel),
                       unpack_bits(ref.codes, q.bits, ref.numel)[:numel])
    assert torch.equal(q.dequantize(packed), q.dequantize(ref)[:numel])
    if name == "bnb-int8":
        return  # no interval()
    for ours, theirs in zip(q.interval(packed), q.interval(ref), strict=True):
        assert torch.equal(ours, theirs[:numel])


@pytest.mark.parametrize("name", GRID + ["bnb-nf4", "bnb-fp4"])
@pytest.mark.parametrize("numel", [1, 3, 65])
def test_unused_low_bits_are_zero(name, numel):
    # deterministic bytes: what follows the last real code in its byte is zero
    q = build_quantizer(name, bits=4) if name in GRID else build_quantizer(name)
    packed = q.quantize(randn(numel, seed=numel) + 0.3, seed=0)
    spare = packed.codes.numel() * 8 - numel * q.bits
    assert spare > 0 and int(packed.codes[-1]) & ((1 << spare) - 1) == 0


@pytest.mark.parametrize("name", GRID)
@pytest.mark.parametrize("n_blocks", [56, 57, 63])
def test_steps_trim_only_the_last(name, n_blocks, monkeypatch):
    # 8 blocks per step: the last step full (56), of one block (57) or of 7 (63), each time
    # with a partial last block
    x = randn(64 * n_blocks - 5)
    q = build_quantizer(name, bits=3)
    whole = q.quantize(x, seed=0)
    monkeypatch.setattr(grid, "_CHUNK", 64 * 8)
    steps = q.quantize(x, seed=0)
    assert steps == q.quantize(x, seed=0) and steps.nbytes == whole.nbytes
    if q.deterministic:
        assert steps == whole
    assert torch.equal(q.dequantize(steps), q.dequantize(padded_reference(q, x, seed=0))[:x.numel()])


def old_payload(q, x, seed=0):
    """Bytes and metadata as written before padding codes were dropped."""
    ref = padded_reference(q, x, seed=seed)
    meta = {**ref.meta(), "shape": list(x.shape)}
    return ref.to_bytes(), json.loads(json.dumps(meta))


@pytest.mark.parametrize("name", BLOCKWISE)
@pytest.mark.parametrize("shape", [(1,), (3, 70), (2, 3, 33)])
def test_old_padded_payload_still_decodes(name, shape):
    q = build_quantizer(name)
    x = randn(*shape, seed=2)
    data, meta = old_payload(q, x)
    assert meta["codes_nbytes"] > math.ceil(x.numel() * q.bits / 8)  # really padded
    old = PackedTensor.from_bytes(data, meta=meta)
    new = q.quantize(x, seed=0)
    assert torch.equal(quantizer_for(old).dequantize(old), q.dequantize(new))
    if name != "bnb-int8":
        for a, b in zip(q.interval(old), q.interval(new), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["nf", "bnb-nf4", "bnb-int8", "none"])
def test_too_few_code_bytes_is_one_line_error(name):
    q = build_quantizer(name)
    packed = q.quantize(randn(3, 71))
    meta = {**packed.meta(), "codes_nbytes": packed.codes.numel() - 1}
    with pytest.raises(FedlppError) as info:
        PackedTensor.from_bytes(packed.to_bytes()[1:], meta=meta)
    need = packed.codes.numel()
    text = str(info.value)
    assert f"{need - 1} bytes" in text and f"at least {need} bytes" in text and "\n" not in text
    short = PackedTensor(quantizer=packed.quantizer, bits=packed.bits, block_size=packed.block_size,
                         shape=packed.shape, dtype=packed.dtype, codes=packed.codes[:-1],
                         scales=packed.scales, extra=packed.extra)
    with pytest.raises(FedlppError, match="too short"):
        q.dequantize(short)
