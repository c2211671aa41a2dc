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
    # bnb packs exactly ceil(numel / 2) bytes too, so the payload bytes are bnb's bytes, but
    # for the low nibble of an odd numel's last byte: bnb's padding code, our zero
    expected = packed.reshape(-1).clone()
    if numel % 2:
        expected[-1] &= 0xF0
    for payload in (ours.quantize(x), build_quantizer("bnb-nf4", block_size=block_size).quantize(x)):
        assert torch.equal(payload.codes, expected)
        # the same absmax, except that bnb 0.50.2 stores an all-zero *partial* block's absmax
        # as its clamp 1e-38 (a whole zero block as 0, like us)
        assert torch.equal(payload.scales.clamp(min=1e-38), state.absmax.clamp(min=1e-38))


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("numel", [1, 2, 63, 64, 65, 1001])
def test_4bit_codes_equal_bnb_bytes(quant_type, numel):
    # bnb on the unpadded vector gives ceil(numel / 2) bytes; when numel is odd the last low
    # nibble is the code of a 0.0 padding value (nf4: 0x7, fp4: 0x0), which we send as zero
    x = randn(numel, seed=numel) + 0.5
    packed, state = bnbf.quantize_4bit(x, blocksize=64, quant_type=quant_type)
    expected = packed.reshape(-1).clone()
    assert expected.numel() == (numel + 1) // 2
    if numel % 2:
        zero_code = {"nf4": 0x7, "fp4": 0x0}[quant_type]
        assert int(expected[-1]) & 0x0F == zero_code
        expected[-1] &= 0xF0
    for name in ("bnb-" + quant_type, *(("nf",) if quant_type == "nf4" else ())):
        payload = build_quantizer(name, bits=4).quantize(x)
        assert torch.equal(payload.codes, expected), name
        assert torch.equal(payload.scales, state.absmax), name


@pytest.mark.parametrize("numel", [1, 63, 65, 1001])
def test_int8_codes_equal_bnb_bytes(numel):
    x = randn(numel, seed=numel)
    codes, state = bnbf.quantize_blockwise(x, blocksize=64)
    payload = build_quantizer("bnb-int8").quantize(x)
    assert payload.codes.numel() == numel
    assert torch.equal(payload.codes, codes) and torch.equal(payload.scales, state.absmax)


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
