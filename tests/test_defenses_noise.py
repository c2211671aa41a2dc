"""noise-before-quantize: the master stays as it was, the broadcast's intervals stop bounding it,
frozen tensors are left alone, and the same seed gives the same payloads."""

import torch
from test_server import make_server

from fedlpp.defenses import build_defenses
from fedlpp.defenses.noise_before_quantize import dither


def _outside_share(server) -> float:
    """Share of the master's values outside the intervals of the round-1 payload."""
    sent = server.broadcast(1)
    outside = total = 0
    for name, packed in sent.packed.items():
        lo, hi = server.quantizer.interval(packed)
        value = server.master[name]
        outside += int(((value < lo - 1e-6) | (value > hi + 1e-6)).sum())
        total += value.numel()
    return outside / total


def _server(scale=None):
    defenses = build_defenses([{"name": "noise-before-quantize", "scale": scale}] if scale else [])
    for d in defenses:
        d.bind(seed=0, fed=None)
    return make_server(defenses=defenses)


def test_without_dither_the_payload_intervals_bound_the_master_and_with_it_they_do_not():
    assert _outside_share(_server()) == 0.0
    noisy = _server(scale=1.0)
    before = {n: t.clone() for n, t in noisy.master.items()}
    share = _outside_share(noisy)
    assert share > 0.2
    assert all(torch.equal(noisy.master[n], before[n]) for n in before)  # master unchanged
    assert noisy.defenses[0].report()["dithered_broadcasts"] == 1


def test_the_same_seed_gives_the_same_dithered_payload_and_rounds_differ():
    a, b = _server(scale=0.5), _server(scale=0.5)
    assert a.broadcast(1).data == b.broadcast(1).data
    assert a.broadcast(2).data != a.broadcast(1).data


def test_dither_leaves_the_named_static_tensors_alone_and_scales_with_rms():
    g = torch.Generator().manual_seed(0)
    tensors = {"lora": torch.full((100_000,), 2.0), "base": torch.ones(10)}
    out = dither(tensors, scale=0.5, skip=frozenset({"base"}), generator=g)
    assert torch.equal(out["base"], tensors["base"])
    assert abs(float((out["lora"] - 2.0).std()) - 1.0) < 0.02  # 0.5 x RMS 2.0
