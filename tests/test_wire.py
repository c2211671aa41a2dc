"""The wire formats: a broadcast body and an upload message round-trip exactly, and every defect
of an upload is a one-line reason, found before any value is read."""

import pytest
import torch

from fedlpp.protocol.wire import (
    HEADER,
    Layout,
    WireError,
    decode_body,
    decode_upload,
    encode_body,
    encode_upload,
    reseal,
)
from fedlpp.quant import build_quantizer


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.lora_A.weight": torch.randn(8, 64, generator=g),
            "a.lora_B.weight": torch.randn(64, 8, generator=g),
            "head.bias": torch.randn(7, generator=g)}


@pytest.mark.parametrize("name, bits", [("none", 32), ("nf", 2), ("nf", 4), ("uniform", 3),
                                        ("bnb-nf4", 4)])
def test_an_upload_round_trips_exactly(name, bits):
    q = build_quantizer(name, bits=bits)
    tensors = _tensors()
    layout = Layout.of(tensors, quantizer=q)
    packed = {n: q.quantize(t, seed=1) for n, t in tensors.items()}
    message = encode_upload(packed, layout=layout, num_examples=37, train_loss=2.5)
    assert len(message) == HEADER.size + layout.nbytes == HEADER.size + len(encode_body(packed))
    got = decode_upload(message, layout=layout)
    assert (got.num_examples, got.train_loss) == (37, 2.5)
    assert list(got.packed) == list(packed)
    assert all(got.packed[n] == packed[n] for n in packed)


def test_a_body_is_the_concatenated_payloads_without_names_or_shapes():
    q = build_quantizer("nf", bits=2)
    packed = {n: q.quantize(t) for n, t in _tensors().items()}
    body = encode_body(packed)
    assert len(body) == sum(p.nbytes for p in packed.values())
    layout = Layout.of(_tensors(), quantizer=q)
    assert all(decode_body(body, layout=layout)[n] == p for n, p in packed.items())
    with pytest.raises(WireError, match="expected"):
        decode_body(body[:-1], layout=layout)


def _message():
    q = build_quantizer("none")
    tensors = _tensors()
    layout = Layout.of(tensors, quantizer=q)
    packed = {n: q.quantize(t) for n, t in tensors.items()}
    return encode_upload(packed, layout=layout, num_examples=5, train_loss=1.0), layout


@pytest.mark.parametrize("edit, words", [
    (lambda m: m[:10], "shorter than the 32-byte upload header"),
    (lambda m: b"XXXX" + m[4:], "not an upload message"),
    (lambda m: m[:4] + (9).to_bytes(2, "little") + m[6:], "format version 9"),
    (lambda m: m[:-3], "truncated or padded"),
    (lambda m: m + b"\0", "truncated or padded"),
    (lambda m: m[:-1] + bytes([m[-1] ^ 1]), "checksum"),
    (lambda m: bytes(len(m)), "not an upload message"),
])
def test_every_defect_of_an_upload_is_a_one_line_reason(edit, words):
    message, layout = _message()
    with pytest.raises(WireError) as err:
        decode_upload(edit(message), layout=layout)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_upload_for_another_model_or_quantizer_is_refused_by_its_fingerprint():
    message, layout = _message()
    other = dict(_tensors())
    other["head.bias"] = torch.zeros(8)
    for foreign in (Layout.of(other, quantizer=build_quantizer("none")),
                    Layout.of(_tensors(), quantizer=build_quantizer("none", bits=16))):
        assert foreign.fingerprint != layout.fingerprint
        with pytest.raises(WireError, match="another model layout"):
            decode_upload(message, layout=foreign)


def test_reseal_makes_a_tampered_body_pass_the_checksum_only():
    message, layout = _message()
    tampered = message[:-4] + b"\xff\xff\xff\x7f"  # a NaN where the last float was
    with pytest.raises(WireError, match="checksum"):
        decode_upload(tampered, layout=layout)
    got = decode_upload(reseal(tampered), layout=layout)
    assert torch.isnan(build_quantizer("none").dequantize(got.packed["head.bias"])[-1])


def test_layout_of_meta_tensors_needs_no_memory():
    shapes = {"w": torch.empty(10_000, 10_000, device="meta")}
    layout = Layout.of(shapes, quantizer=build_quantizer("nf", bits=2))
    assert layout.nbytes == 10**8 * 2 // 8 + 4 * (10**8 // 64)
