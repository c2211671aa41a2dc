"""Known answers against bitsandbytes: our ``nf`` at 4 bits *is* bnb nf4."""

import pytest
import torch

from fedlpp.quant import build_quantizer
from fedlpp.quant.nf import nf_levels

bnbf = pytest.importorskip("bitsandbytes.functional")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_nf4_codebook_equals_bnb():
    assert torch.equal(nf_levels(bits=4), bnbf.get_4bit_type("nf4", device="cpu"))


@pytest.mark.parametrize("block_size", [32, 64, 128, 4096])
@pytest.mark.parametrize("numel", [64, 1000, 4096 * 3, 4096 * 3 + 37])
def test_nf4_dequantized_values_equal_bnb(block_size, numel):
    x = randn(numel, seed=numel) * torch.linspace(0.1, 5, numel)
    x[:block_size] = 0  # a zero block
    packed, state = bnbf.quantize_4bit(x, blocksize=block_size, quant_type="nf4")
    reference = bnbf.dequantize_4bit(packed, state).reshape(-1)
    ours = build_quantizer("nf", bits=4, block_size=block_size)
    # bit-exact (torch.equal, no tolerance): same scaling x * (1/absmax), same float32
    # midpoints, same tie rule and the same codebook values, so the same codes and products
    assert torch.equal(ours.fake_quantize(x), reference)
    assert torch.equal(build_quantizer("bnb-nf4", block_size=block_size).fake_quantize(x), reference)
    if numel % block_size == 0:  # no padding: the payload bytes are bnb's bytes too
        payload = ours.quantize(x)
        assert torch.equal(payload.codes, packed.reshape(-1))
        assert torch.equal(payload.scales, state.absmax)


def test_nf4_2d_and_half_inputs_equal_bnb():
    x = randn(48, 96)
    # blocks run over the flattened tensor, as in bnb's quantize_4bit. (bnb 0.50.2's CPU
    # dequantize_4bit kernel restarts blocks at each row when a row is not a multiple of the
    # block size, so its own round trip of this (48, 96) tensor is wrong; on the flat view it
    # agrees with bnb's reference backend. bnb-nf4 always decodes the flat view.)
    packed, state = bnbf.quantize_4bit(x.reshape(-1), blocksize=64, quant_type="nf4")
    reference = bnbf.dequantize_4bit(packed, state).reshape(x.shape)
    assert torch.equal(build_quantizer("nf", bits=4).fake_quantize(x), reference)
    assert torch.equal(build_quantizer("bnb-nf4").fake_quantize(x), reference)
    # bnb-nf4 and nf agree for every input dtype (both scale in float32)
    for dtype in (torch.float16, torch.bfloat16):
        xd = x.to(dtype)
        a = build_quantizer("nf", bits=4).fake_quantize(xd)
        b = build_quantizer("bnb-nf4").fake_quantize(xd)
        assert a.dtype == dtype and torch.equal(a, b)


def test_bnb_fp4_and_int8_match_direct_calls():
    x = randn(64 * 50)
    packed, state = bnbf.quantize_4bit(x, blocksize=64, quant_type="fp4")
    assert torch.equal(build_quantizer("bnb-fp4").fake_quantize(x),
                       bnbf.dequantize_4bit(packed, state).reshape(-1))
    codes, state = bnbf.quantize_blockwise(x, blocksize=64)
    q = build_quantizer("bnb-int8")
    payload = q.quantize(x)
    assert torch.equal(payload.codes, codes) and torch.equal(payload.scales, state.absmax)
    assert torch.equal(q.dequantize(payload), bnbf.dequantize_blockwise(codes, state))
